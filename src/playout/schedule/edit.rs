//! Edits made while the channel is on air: insert, move, replace, skip, cue the next live event
//! now. An edit that would change a frame that has already aired (before `now`) is refused;
//! the slot on air may only be cut at `now` (skip, cue).

use serde::Deserialize;

use super::model::{FrameClock, Item, ItemType};
use super::resolve::{resolve, Library, Plan};
use super::ScheduleError;

#[derive(Debug, Clone, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Edit {
    /// Inserts `item` after the item `after` (at the top when absent).
    Insert {
        item: Item,
        #[serde(default)]
        after: Option<String>,
    },
    /// Moves `item` after `after` (to the top when absent).
    Move {
        item: String,
        #[serde(default)]
        after: Option<String>,
    },
    /// Replaces `item` with `with` (which keeps the old id when it has none).
    Replace { item: String, with: Item },
    /// Skips `item`: a later one is not aired; the one on air is cut now.
    Skip { item: String },
    /// Cues the next live event now: the one on air ends, or the next live item starts, now.
    Cue,
}

fn pos(items: &[Item], id: &str) -> Result<usize, ScheduleError> {
    items
        .iter()
        .position(|i| i.id == id)
        .ok_or_else(|| ScheduleError::NoSuchItem(id.to_string()))
}

/// Whether `id` has started airing by `now` in `plan`.
fn started(plan: &Plan, id: &str, now: u64) -> bool {
    plan.slot_of(id).is_some_and(|s| s.start <= now)
}

fn aired(id: &str, why: &str) -> ScheduleError {
    ScheduleError::Aired {
        item: id.to_string(),
        why: why.to_string(),
    }
}

/// Applies `e` at channel frame `now`; returns the new items, or why not.
pub fn apply(
    items: &[Item],
    e: Edit,
    now: u64,
    clock: &FrameClock,
    lib: &Library,
    origin: u64,
) -> Result<Vec<Item>, ScheduleError> {
    let old = resolve(items, clock, lib, origin);
    let mut new = items.to_vec();
    let after_pos = |v: &[Item], after: &Option<String>| -> Result<usize, ScheduleError> {
        match after {
            None => Ok(0),
            Some(a) => Ok(pos(v, a)? + 1),
        }
    };
    match e {
        Edit::Insert { mut item, after } => {
            if item.id.is_empty() {
                let mut n = new.len();
                loop {
                    n += 1;
                    let id = format!("item-{n}");
                    if !new.iter().any(|i| i.id == id) {
                        item.id = id;
                        break;
                    }
                }
            }
            if new.iter().any(|i| i.id == item.id) {
                return Err(item.bad("id", "used by another item"));
            }
            item.check(clock.rate)?;
            let at = after_pos(&new, &after)?;
            new.insert(at, item);
        }
        Edit::Move { item, after } => {
            if started(&old, &item, now) {
                return Err(aired(&item, "it cannot be moved"));
            }
            let from = pos(&new, &item)?;
            let it = new.remove(from);
            let at = after_pos(&new, &after)?;
            new.insert(at, it);
        }
        Edit::Replace { item, mut with } => {
            if started(&old, &item, now) {
                return Err(aired(&item, "it cannot be replaced"));
            }
            let at = pos(&new, &item)?;
            if with.id.is_empty() {
                with.id = item.clone();
            }
            if with.id != item && new.iter().any(|i| i.id == with.id) {
                return Err(with.bad("id", "used by another item"));
            }
            with.check(clock.rate)?;
            new[at] = with;
        }
        Edit::Skip { item } => {
            let at = pos(&new, &item)?;
            match old.slot_of(&item) {
                Some(s) if s.end() <= now => return Err(aired(&item, "it has aired already")),
                Some(s) if s.start <= now => new[at].cut_frame = Some(now),
                _ => new[at].skip = true,
            }
        }
        Edit::Cue => {
            let on_air = old.slot_index_at(now).map(|i| old.slots[i].item.clone());
            let on_air_pos = on_air
                .as_deref()
                .filter(|s| !s.is_empty())
                .and_then(|id| pos(&new, id).ok());
            match on_air_pos {
                Some(p) if new[p].kind == ItemType::Live => new[p].cut_frame = Some(now),
                _ => {
                    // The first live item after what is on air (or after everything that has
                    // started, in a gap).
                    let from = match on_air_pos {
                        Some(p) => p + 1,
                        None => new
                            .iter()
                            .rposition(|i| started(&old, &i.id, now))
                            .map_or(0, |p| p + 1),
                    };
                    let live = (from..new.len())
                        .find(|&i| new[i].kind == ItemType::Live && !new[i].skip)
                        .ok_or_else(|| {
                            ScheduleError::Nothing(
                                "no live event to cue after what is on air".into(),
                            )
                        })?;
                    for it in &mut new[from..live] {
                        it.skip = true;
                    }
                    new[live].cued_frame = Some(now);
                    new[live].skip = false;
                    if let Some(p) = on_air_pos {
                        new[p].cut_frame = Some(now);
                    }
                }
            }
        }
    }
    super::model::anchored(&new)?;
    let next = resolve(&new, clock, lib, origin);
    keeps_the_past(&old, &next, now)?;
    Ok(new)
}

/// Every frame before `now` airs the same material in both plans.
pub fn keeps_the_past(old: &Plan, new: &Plan, now: u64) -> Result<(), ScheduleError> {
    let past = |p: &Plan| -> Vec<(String, u64, u64)> {
        p.slots
            .iter()
            .take_while(|s| s.start < now)
            .map(|s| (s.item.clone(), s.start, s.end().min(now)))
            .collect()
    };
    let (a, b) = (past(old), past(new));
    for (x, y) in a.iter().zip(&b) {
        if x != y {
            return Err(aired(
                if x.0.is_empty() { &y.0 } else { &x.0 },
                "the edit would change what has aired",
            ));
        }
    }
    if a.len() != b.len() {
        let id = a
            .last()
            .or(b.last())
            .map(|s| s.0.clone())
            .unwrap_or_default();
        return Err(aired(&id, "the edit would change what has aired"));
    }
    let same_material = old
        .slots
        .iter()
        .take_while(|s| s.start < now)
        .zip(&new.slots)
        .all(|(x, y)| x.material == y.material);
    if !same_material {
        return Err(aired("", "the edit would change what has aired"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::model::{rfc3339, Point};
    use super::*;
    use crate::config::Rate;

    fn c() -> FrameClock {
        FrameClock {
            rate: Rate::new(25, 1),
            epoch_ms: 1_790_000_000_000,
        }
    }

    fn a(id: &str, s: f64) -> Item {
        Item {
            id: id.into(),
            house_id: Some(id.into()),
            out: Some(Point::Seconds(s)),
            ..Item::default()
        }
    }

    fn rundown() -> Vec<Item> {
        let mut x = a("x", 10.0);
        x.start = Some(rfc3339(c().epoch_ms));
        let live = Item {
            id: "live".into(),
            kind: ItemType::Live,
            source: Some("studio".into()),
            ..Item::default()
        };
        let mut z = a("z", 10.0);
        z.start = Some(rfc3339(c().epoch_ms + 3_600_000));
        vec![x, a("y", 10.0), live, z]
    }

    fn plan(items: &[Item]) -> Vec<(String, u64, u64)> {
        resolve(items, &c(), &Library::default(), 0)
            .slots
            .into_iter()
            .map(|s| (s.item, s.start, s.frames))
            .collect()
    }

    #[test]
    fn edits_never_change_what_aired() {
        let lib = Library::default();
        let items = rundown();
        // On air: y (frames 250..500), at frame 300.
        let e = |e, now| apply(&items, e, now, &c(), &lib, 0);
        assert!(matches!(
            e(
                Edit::Move {
                    item: "x".into(),
                    after: Some("y".into())
                },
                300
            ),
            Err(ScheduleError::Aired { .. })
        ));
        assert!(matches!(
            e(
                Edit::Replace {
                    item: "y".into(),
                    with: a("", 3.0)
                },
                300
            ),
            Err(ScheduleError::Aired { .. })
        ));
        assert!(matches!(
            e(Edit::Skip { item: "x".into() }, 300),
            Err(ScheduleError::Aired { .. })
        ));
        // Inserting before what aired would shift it: refused.
        assert!(matches!(
            e(
                Edit::Insert {
                    item: a("n", 2.0),
                    after: Some("x".into())
                },
                300
            ),
            Err(ScheduleError::Aired { .. })
        ));
        // Skip on air cuts it at now.
        let v = e(Edit::Skip { item: "y".into() }, 300).unwrap();
        assert_eq!(plan(&v)[1], ("y".into(), 250, 50));
        assert_eq!(plan(&v)[2].1, 300);
        // Inserting after what is on air is fine.
        let v = e(
            Edit::Insert {
                item: a("n", 2.0),
                after: Some("y".into()),
            },
            300,
        )
        .unwrap();
        assert_eq!(plan(&v)[2], ("n".into(), 500, 50));
        // Cue: y ends now and the live event starts now.
        let v = e(Edit::Cue, 300).unwrap();
        let p = plan(&v);
        assert_eq!(p[1], ("y".into(), 250, 50));
        assert_eq!(p[2].0, "live");
        assert_eq!(p[2].1, 300);
        // Cue again while the live event is on air: it ends then, z's hard start stays.
        let v2 = apply(&v, Edit::Cue, 1000, &c(), &lib, 0).unwrap();
        let p2 = plan(&v2);
        assert_eq!(p2[2], ("live".into(), 300, 700));
        assert_eq!(p2.last().unwrap().0, "z");
        assert_eq!(p2.last().unwrap().1, 90_000);
        // Replace and move of later items.
        let v = e(
            Edit::Replace {
                item: "live".into(),
                with: a("r", 4.0),
            },
            300,
        )
        .unwrap();
        assert_eq!(plan(&v)[2], ("r".into(), 500, 100));
        let v = e(
            Edit::Move {
                item: "z".into(),
                after: Some("y".into()),
            },
            300,
        )
        .unwrap();
        assert_eq!(v[2].id, "z");
        assert!(matches!(
            e(
                Edit::Skip {
                    item: "nope".into()
                },
                300
            ),
            Err(ScheduleError::NoSuchItem(_))
        ));
    }
}
