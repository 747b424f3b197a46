//! A rundown turned into frame-counted air slots: hard starts exact to the frame, soft items
//! end to end, gaps and short items filled with filler, overruns cut at the next hard start.
//! What the resolution had to do (a gap, a cut, an item pushed out) is kept as notes for
//! validation.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use crate::playout::plan::{AirSlot, Break, Material, Secondary, Timeline};

use super::model::{FrameClock, Item, ItemType};

/// What the catalog says about one asset, as the core needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct AssetInfo {
    pub id: i64,
    pub house_id: String,
    pub title: String,
    pub status: String,
    pub duration_s: f64,
    /// The file to air (empty when the asset has none).
    pub path: PathBuf,
    pub windows: Vec<RightsWindow>,
    /// Why the asset is not approved (review), `None` when it is.
    pub not_approved: Option<String>,
}

/// A rights window: from/until (Unix ms, open when absent), territories and platforms (empty:
/// all).
#[derive(Debug, Clone, PartialEq)]
pub struct RightsWindow {
    pub from_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub territories: Vec<String>,
    pub platforms: Vec<String>,
}

/// The assets a schedule names, by catalog id.
#[derive(Debug, Clone, Default)]
pub struct Library {
    pub by_id: HashMap<i64, AssetInfo>,
}

impl Library {
    pub fn find(&self, it: &Item) -> Option<&AssetInfo> {
        if let Some(id) = it.asset_id {
            return self.by_id.get(&id);
        }
        let h = it.house_id.as_deref()?;
        self.by_id.values().find(|a| a.house_id == h)
    }
}

/// An until-cued live event with no hard start after it runs this long in the plan.
pub const OPEN_FRAMES_S: u64 = 24 * 3600;

#[derive(Debug, Clone, PartialEq)]
pub enum NoteKind {
    /// Filler of this many frames before the item.
    Gap(u64),
    /// The item was cut by this many frames at the next hard start.
    Cut(u64),
    /// The item never airs: pushed past a later hard start, or a hard start before an earlier
    /// one.
    Dropped(String),
    /// The item's length is unknown (its asset is missing and it has no out point or duration).
    NoLength,
    /// The item's hard start, `cued_frame` or points could not be read.
    Invalid(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub item: String,
    pub kind: NoteKind,
}

/// The resolved plan of a channel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub slots: Vec<AirSlot>,
    pub notes: Vec<Note>,
}

impl Plan {
    pub fn slot_index_at(&self, frame: u64) -> Option<usize> {
        let i = self.slots.partition_point(|s| s.end() <= frame);
        self.slots
            .get(i)
            .filter(|s| s.start <= frame && frame < s.end())
            .map(|_| i)
    }

    /// The slot of an item (the first one; an item has at most one).
    pub fn slot_of(&self, item: &str) -> Option<&AirSlot> {
        self.slots.iter().find(|s| s.item == item)
    }
}

impl Timeline for Plan {
    fn slot_at(&self, frame: u64) -> Option<AirSlot> {
        self.slot_index_at(frame).map(|i| self.slots[i].clone())
    }
}

/// A plan that the service swaps whenever the schedule changes and the engine reads.
#[derive(Debug, Default, Clone)]
pub struct SharedPlan(Arc<RwLock<Arc<Plan>>>);

impl SharedPlan {
    pub fn set(&self, p: Plan) {
        if let Ok(mut g) = self.0.write() {
            *g = Arc::new(p);
        }
    }

    pub fn get(&self) -> Arc<Plan> {
        self.0.read().map(|g| g.clone()).unwrap_or_default()
    }
}

impl Timeline for SharedPlan {
    fn slot_at(&self, frame: u64) -> Option<AirSlot> {
        self.get().slot_at(frame)
    }
}

/// Derived splice_event_id: FNV-1a of the item id and the break's index, never 0.
fn event_id(item: &str, i: usize) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in item.bytes().chain(i.to_le_bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h.max(1)
}

/// The item's planned length in frames (before any cut), or `None` when unknown.
fn length(it: &Item, clock: &FrameClock, lib: &Library) -> Result<Option<u64>, String> {
    let rate = clock.rate;
    let p = |p: &Option<super::model::Point>| p.as_ref().map(|p| p.frames(rate)).transpose();
    if let Some(d) = p(&it.duration)? {
        return Ok(Some(d));
    }
    match it.kind {
        ItemType::Asset => {
            let inp = p(&it.in_point)?.unwrap_or(0);
            if let Some(o) = p(&it.out)? {
                return Ok(Some(o.saturating_sub(inp)));
            }
            Ok(lib
                .find(it)
                .map(|a| rate.frames_in(a.duration_s).saturating_sub(inp)))
        }
        ItemType::Live => Ok(Some(rate.frames_in(OPEN_FRAMES_S as f64))),
        ItemType::Break => Ok(None),
    }
}

fn slot_for(it: &Item, start: u64, frames: u64, clock: &FrameClock, lib: &Library) -> AirSlot {
    let rate = clock.rate;
    let material = match it.kind {
        ItemType::Asset => match lib.find(it) {
            Some(a) if !a.path.as_os_str().is_empty() => Material::File {
                path: a.path.clone(),
                asset_id: a.id.to_string(),
                house_id: a.house_id.clone(),
                in_frame: it
                    .in_point
                    .as_ref()
                    .and_then(|p| p.frames(rate).ok())
                    .unwrap_or(0),
            },
            _ => Material::Filler,
        },
        ItemType::Live => Material::Live {
            source: it.source.clone().unwrap_or_default(),
        },
        ItemType::Break => Material::Filler,
    };
    let mut breaks: Vec<Break> = it
        .breaks
        .iter()
        .enumerate()
        .filter_map(|(i, b)| {
            Some(Break {
                at: b.at.frames(rate).ok()?,
                duration: b.duration.frames(rate).ok()?,
                event_id: b.event_id.unwrap_or_else(|| event_id(&it.id, i)),
                time_signal: b.kind == super::model::SpliceKind::TimeSignal,
            })
        })
        .collect();
    if it.kind == ItemType::Break {
        breaks.insert(
            0,
            Break {
                at: 0,
                duration: frames,
                event_id: event_id(&it.id, usize::MAX),
                time_signal: it.scte35 == Some(super::model::SpliceKind::TimeSignal),
            },
        );
    }
    let secondary = it
        .secondary
        .iter()
        .filter_map(|s| {
            let at = s.at.frames(rate).ok()?;
            Some(if s.logo {
                Secondary::LogoOn { at }
            } else {
                Secondary::LogoOff { at }
            })
        })
        .collect();
    let mut s = AirSlot {
        item: it.id.clone(),
        start,
        frames,
        material,
        breaks,
        secondary,
    };
    trim(&mut s);
    s
}

/// Keeps breaks and secondary events inside the slot.
fn trim(s: &mut AirSlot) {
    let n = s.frames;
    s.breaks.retain(|b| b.at < n);
    for b in &mut s.breaks {
        b.duration = b.duration.min(n - b.at);
    }
    s.secondary.retain(|e| match e {
        Secondary::LogoOn { at } | Secondary::LogoOff { at } => *at < n,
    });
}

fn filler(start: u64, frames: u64) -> AirSlot {
    AirSlot {
        item: String::new(),
        start,
        frames,
        material: Material::Filler,
        breaks: Vec::new(),
        secondary: Vec::new(),
    }
}

/// Resolves `items` in order. A soft first item starts at `origin`.
pub fn resolve(items: &[Item], clock: &FrameClock, lib: &Library, origin: u64) -> Plan {
    let mut slots: Vec<AirSlot> = Vec::new();
    let mut notes = Vec::new();
    let mut cursor = origin;
    let mut last_hard: Option<u64> = None;
    let note = |notes: &mut Vec<Note>, item: &str, kind| {
        notes.push(Note {
            item: item.to_string(),
            kind,
        })
    };
    for it in items.iter().filter(|i| !i.skip) {
        let hard = match it.hard_frame(clock) {
            Ok(h) => h,
            Err(e) => {
                note(&mut notes, &it.id, NoteKind::Invalid(e.to_string()));
                continue;
            }
        };
        let start = match hard {
            Some(h) => {
                if last_hard.is_some_and(|l| h < l) {
                    note(
                        &mut notes,
                        &it.id,
                        NoteKind::Dropped("its hard start is before an earlier item's".into()),
                    );
                    continue;
                }
                while let Some(last) = slots.last_mut() {
                    if last.start >= h {
                        let gone = slots.pop().map(|s| s.item).unwrap_or_default();
                        if !gone.is_empty() {
                            note(
                                &mut notes,
                                &gone,
                                NoteKind::Dropped(format!(
                                    "pushed past the hard start of {:?}",
                                    it.id
                                )),
                            );
                        }
                        continue;
                    }
                    if last.end() > h {
                        let cut = last.end() - h;
                        last.frames = h - last.start;
                        trim(last);
                        if !last.item.is_empty() {
                            let id = last.item.clone();
                            note(&mut notes, &id, NoteKind::Cut(cut));
                        }
                    }
                    break;
                }
                cursor = slots.last().map_or(h, AirSlot::end);
                if cursor < h {
                    slots.push(filler(cursor, h - cursor));
                    note(&mut notes, &it.id, NoteKind::Gap(h - cursor));
                }
                last_hard = Some(h);
                h
            }
            None => cursor,
        };
        let len = match length(it, clock, lib) {
            Ok(Some(l)) => l,
            Ok(None) => {
                note(&mut notes, &it.id, NoteKind::NoLength);
                continue;
            }
            Err(e) => {
                note(&mut notes, &it.id, NoteKind::Invalid(e));
                continue;
            }
        };
        let len = match it.cut_frame {
            Some(c) => len.min(c.saturating_sub(start)),
            None => len,
        };
        if len == 0 {
            continue;
        }
        slots.push(slot_for(it, start, len, clock, lib));
        cursor = start + len;
    }
    Plan { slots, notes }
}

#[cfg(test)]
mod tests {
    use super::super::model::Point;
    use super::*;
    use crate::config::Rate;
    use proptest::prelude::*;

    fn clock(rate: Rate) -> FrameClock {
        FrameClock {
            rate,
            epoch_ms: 1_790_000_000_000,
        }
    }

    fn at(c: &FrameClock, s: i64) -> String {
        super::super::model::rfc3339(c.epoch_ms + s * 1000)
    }

    fn asset(id: &str, secs: f64) -> Item {
        Item {
            id: id.into(),
            house_id: Some(id.into()),
            out: Some(Point::Seconds(secs)),
            ..Item::default()
        }
    }

    #[test]
    fn gap_short_item_and_overrun() {
        let c = clock(Rate::new(25, 1));
        let mut a = asset("a", 10.0);
        a.start = Some(at(&c, 0));
        let b = asset("b", 30.0); // soft, overruns the hard start at 30 s
        let mut h = asset("h", 5.0);
        h.start = Some(at(&c, 30));
        h.frame = Some(3);
        let mut g = asset("g", 5.0);
        g.start = Some(at(&c, 40));
        let p = resolve(&[a, b, h, g], &c, &Library::default(), 0);
        let v: Vec<(&str, u64, u64)> = p
            .slots
            .iter()
            .map(|s| (s.item.as_str(), s.start, s.frames))
            .collect();
        assert_eq!(
            v,
            [
                ("a", 0, 250),
                ("b", 250, 503),
                ("h", 753, 125),
                ("", 878, 122),
                ("g", 1000, 125)
            ]
        );
        assert!(p.notes.contains(&Note {
            item: "b".into(),
            kind: NoteKind::Cut(247)
        }));
        assert!(p.notes.contains(&Note {
            item: "g".into(),
            kind: NoteKind::Gap(122)
        }));
        assert_eq!(p.slot_at(877).unwrap().item, "h");
        assert_eq!(p.slot_at(878).unwrap().material, Material::Filler);
        assert!(p.slot_at(1125).is_none());
    }

    #[test]
    fn ntsc_hard_start_is_the_first_frame_at_or_after_the_second() {
        let c = clock(Rate::new(30000, 1001));
        // 10 s = 299.7 frames: the frame at or after is 300.
        assert_eq!(c.frame_at_or_after(c.epoch_ms + 10_000), Some(300));
        assert_eq!(c.frame_at(c.epoch_ms + 10_000), Some(299));
        assert!(c.ms_of(300) >= c.epoch_ms + 10_000);
        assert_eq!(c.timecode(1800), "00:01:00;02");
    }

    #[test]
    fn breaks_and_logo_stay_inside_a_cut_slot() {
        let c = clock(Rate::new(25, 1));
        let mut a = asset("a", 60.0);
        a.breaks.push(super::super::model::BreakSpec {
            at: Point::Seconds(8.0),
            duration: Point::Seconds(30.0),
            kind: super::super::model::SpliceKind::TimeSignal,
            event_id: None,
        });
        a.secondary.push(super::super::model::SecondarySpec {
            at: Point::Timecode("00:00:20:00".into()),
            logo: false,
        });
        let mut b = asset("b", 5.0);
        b.start = Some(at(&c, 10));
        let p = resolve(&[a, b], &c, &Library::default(), 0);
        let s = &p.slots[0];
        assert_eq!(s.frames, 250);
        assert_eq!(s.breaks.len(), 1);
        assert_eq!((s.breaks[0].at, s.breaks[0].duration), (200, 50));
        assert!(s.breaks[0].time_signal && s.breaks[0].event_id != 0);
        assert!(s.secondary.is_empty());
    }

    #[derive(Debug, Clone)]
    struct Gen {
        hard: Option<(i64, u32)>,
        secs: f64,
        live: bool,
        skip: bool,
    }

    fn gen() -> impl Strategy<Value = Gen> {
        (
            proptest::option::weighted(0.4, (0i64..4000, 0u32..30)),
            0.04f64..900.0,
            proptest::bool::weighted(0.1),
            proptest::bool::weighted(0.1),
        )
            .prop_map(|(hard, secs, live, skip)| Gen {
                hard,
                secs,
                live,
                skip,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn slots_are_contiguous_and_hard_starts_exact(
            gens in proptest::collection::vec(gen(), 1..40),
            ntsc in any::<bool>(),
        ) {
            let c = clock(if ntsc { Rate::new(30000, 1001) } else { Rate::new(25, 1) });
            let items: Vec<Item> = gens.iter().enumerate().map(|(i, g)| {
                let mut it = if g.live {
                    Item { id: format!("i{i}"), kind: ItemType::Live, source: Some("s".into()),
                        duration: (i % 2 == 0).then_some(Point::Seconds(g.secs)), ..Item::default() }
                } else {
                    asset(&format!("i{i}"), g.secs)
                };
                if let Some((s, f)) = g.hard {
                    it.start = Some(at(&c, s));
                    it.frame = Some(f % c.rate.timecode_base());
                }
                it.skip = g.skip;
                it
            }).collect();
            let p = resolve(&items, &c, &Library::default(), 0);
            for w in p.slots.windows(2) {
                prop_assert_eq!(w[0].end(), w[1].start, "contiguous, no overlap");
            }
            for s in &p.slots {
                prop_assert!(s.frames > 0);
            }
            // A hard item that airs starts exactly at its frame.
            let mut starts = std::collections::HashSet::new();
            for s in &p.slots {
                prop_assert!(starts.insert(s.start));
                if s.item.is_empty() { continue; }
                let it = items.iter().find(|i| i.id == s.item).unwrap();
                if let Some(h) = it.hard_frame(&c).unwrap() {
                    prop_assert_eq!(s.start, h);
                }
                prop_assert_eq!(p.slot_at(s.start).unwrap().item, s.item.clone());
                prop_assert_eq!(p.slot_at(s.end() - 1).unwrap().item, s.item.clone());
            }
            // Every non-skipped item either airs or has a note saying why not.
            for it in items.iter().filter(|i| !i.skip) {
                let aired = p.slot_of(&it.id).is_some();
                let dropped = p.notes.iter().any(|n| n.item == it.id && matches!(n.kind, NoteKind::Dropped(_)));
                prop_assert!(aired || dropped, "{} vanished", it.id);
            }
        }
    }
}
