//! Validation of a rundown against the catalog's view of its assets and against its own plan:
//! each warning names the item and the reason.

use serde::Serialize;

use super::model::{FrameClock, Item, ItemType};
use super::resolve::{Library, NoteKind, Plan};

/// Where the channel airs, for rights windows, and whether what it airs must be approved.
#[derive(Debug, Clone, Default)]
pub struct Territory {
    pub territory: String,
    pub platform: String,
    /// Every asset must be approved (review) to air.
    pub require_approval: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Warning {
    pub item: String,
    /// `asset_missing`, `asset_not_ready`, `asset_no_file`, `not_approved`, `rights`,
    /// `out_of_range`, `gap`, `overlap`, `dropped`, `no_length`, `invalid`.
    pub code: &'static str,
    pub reason: String,
}

fn w(item: &str, code: &'static str, reason: impl Into<String>) -> Warning {
    Warning {
        item: item.to_string(),
        code,
        reason: reason.into(),
    }
}

/// Every warning about `items` (already resolved into `plan`).
pub fn validate(
    items: &[Item],
    plan: &Plan,
    clock: &FrameClock,
    lib: &Library,
    place: &Territory,
) -> Vec<Warning> {
    let mut out = Vec::new();
    for n in &plan.notes {
        let fps = clock.rate.as_f64();
        out.push(match &n.kind {
            NoteKind::Gap(f) => w(
                &n.item,
                "gap",
                format!("{:.2} s of filler before it ({f} frames)", *f as f64 / fps),
            ),
            NoteKind::Cut(f) => w(
                &n.item,
                "overlap",
                format!(
                    "overruns the next hard start: cut by {:.2} s ({f} frames)",
                    *f as f64 / fps
                ),
            ),
            NoteKind::Dropped(why) => w(&n.item, "overlap", format!("never airs: {why}")),
            NoteKind::NoLength => w(
                &n.item,
                "no_length",
                "no out point or duration, and its asset is unknown",
            ),
            NoteKind::Invalid(why) => w(&n.item, "invalid", why.clone()),
        });
    }
    for it in items
        .iter()
        .filter(|i| !i.skip && i.kind == ItemType::Asset)
    {
        let name = it
            .house_id
            .clone()
            .or(it.asset_id.map(|i| i.to_string()))
            .unwrap_or_default();
        let Some(a) = lib.find(it) else {
            out.push(w(
                &it.id,
                "asset_missing",
                format!("asset {name:?} is not in the catalog"),
            ));
            continue;
        };
        if a.status != "ready" {
            out.push(w(
                &it.id,
                "asset_not_ready",
                format!("asset {name:?} is {:?}, not ready", a.status),
            ));
        }
        if let Some(why) = a.not_approved.as_ref().filter(|_| place.require_approval) {
            out.push(w(
                &it.id,
                "not_approved",
                format!("asset {name:?} is not approved to air: {why}"),
            ));
        }
        if a.path.as_os_str().is_empty() {
            out.push(w(
                &it.id,
                "asset_no_file",
                format!("asset {name:?} has no file to air"),
            ));
        }
        let rate = clock.rate;
        let end = it.out.as_ref().and_then(|p| p.frames(rate).ok());
        let asset_frames = rate.frames_in(a.duration_s);
        if a.duration_s > 0.0 && end.is_some_and(|e| e > asset_frames + 1) {
            out.push(w(
                &it.id,
                "out_of_range",
                format!(
                    "its out point is after the asset's end ({:.2} s)",
                    a.duration_s
                ),
            ));
        }
        if let Some(s) = plan.slot_of(&it.id) {
            let (from, until) = (clock.ms_of(s.start), clock.ms_of(s.end()));
            if !a.windows.is_empty() {
                let fits = a.windows.iter().any(|r| {
                    r.from_ms.is_none_or(|f| f <= from)
                        && r.until_ms.is_none_or(|u| until <= u)
                        && (r.territories.is_empty()
                            || r.territories
                                .iter()
                                .any(|t| t.eq_ignore_ascii_case(&place.territory)))
                        && (r.platforms.is_empty()
                            || r.platforms
                                .iter()
                                .any(|p| p.eq_ignore_ascii_case(&place.platform)))
                });
                if !fits {
                    out.push(w(
                        &it.id,
                        "rights",
                        format!(
                            "no rights window of asset {name:?} covers {} to {} for territory {:?}, platform {:?}",
                            super::model::rfc3339(from),
                            super::model::rfc3339(until),
                            place.territory,
                            place.platform
                        ),
                    ));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::model::Point;
    use super::super::resolve::{resolve, AssetInfo, RightsWindow};
    use super::*;
    use crate::config::Rate;

    #[test]
    fn reports_item_and_reason() {
        let c = FrameClock {
            rate: Rate::new(25, 1),
            epoch_ms: 1_790_000_000_000,
        };
        let mut lib = Library::default();
        let info = |id: i64, h: &str, status: &str, windows| AssetInfo {
            id,
            house_id: h.into(),
            title: h.into(),
            status: status.into(),
            duration_s: 20.0,
            path: "/m/x.mxf".into(),
            windows,
            not_approved: (h == "ING").then(|| "never put in review".to_string()),
        };
        lib.by_id.insert(1, info(1, "OK", "ready", vec![]));
        lib.by_id.insert(2, info(2, "ING", "ingesting", vec![]));
        lib.by_id.insert(
            3,
            info(
                3,
                "FR",
                "ready",
                vec![RightsWindow {
                    from_ms: None,
                    until_ms: None,
                    territories: vec!["FR".into()],
                    platforms: vec![],
                }],
            ),
        );
        let a = |id: &str, h: &str| Item {
            id: id.into(),
            house_id: Some(h.into()),
            ..Item::default()
        };
        let mut items = vec![a("1", "OK"), a("2", "ING"), a("3", "FR"), a("4", "NOPE")];
        items[0].start = Some(super::super::model::rfc3339(c.epoch_ms));
        items[3].out = Some(Point::Seconds(5.0));
        let mut late = a("5", "OK");
        late.start = Some(super::super::model::rfc3339(c.epoch_ms + 200_000));
        items.push(late);
        let mut long = a("6", "OK");
        long.out = Some(Point::Seconds(30.0));
        items.push(long);
        let p = resolve(&items, &c, &lib, 0);
        let mut place = Territory {
            territory: "CH".into(),
            platform: "linear".into(),
            ..Territory::default()
        };
        let v = validate(&items, &p, &c, &lib, &place);
        assert!(!v.iter().any(|x| x.code == "not_approved"), "{v:?}");
        place.require_approval = true;
        let strict = validate(&items, &p, &c, &lib, &place);
        let na: Vec<&Warning> = strict.iter().filter(|x| x.code == "not_approved").collect();
        assert_eq!(na.len(), 1, "{strict:?}");
        assert_eq!(na[0].item, "2");
        assert!(na[0].reason.contains("never put in review"), "{na:?}");
        place.require_approval = false;
        let has = |item: &str, code: &str| v.iter().any(|x| x.item == item && x.code == code);
        assert!(has("2", "asset_not_ready"), "{v:?}");
        assert!(has("3", "rights"), "{v:?}");
        assert!(has("4", "asset_missing"), "{v:?}");
        assert!(has("5", "gap"), "{v:?}");
        assert!(has("6", "out_of_range"), "{v:?}");
        assert!(!v.iter().any(|x| x.item == "1"), "{v:?}");
        let fr = Territory {
            territory: "fr".into(),
            platform: "linear".into(),
            ..Territory::default()
        };
        assert!(!validate(&items, &p, &c, &lib, &fr)
            .iter()
            .any(|x| x.code == "rights"));
    }
}
