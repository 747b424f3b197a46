//! The schedule core, pure: a channel's rundown (`model`), resolved into frame-counted air slots
//! (`resolve`, the [`crate::playout::plan::Timeline`] the engine reads), checked against the
//! catalog's view of its assets (`validate`), edited on air without touching what has aired
//! (`edit`), imported from JSON, CSV and BXF and exported as XMLTV, now/next and as-run
//! (`exchange`). The clock is a value passed in; no libav, tokio or SQL here.
//! Imports `config` (Rate) and `timecode` only.

pub mod edit;
pub mod exchange;
pub mod model;
pub mod resolve;
pub mod validate;

pub use model::{FrameClock, Item, ItemType, Point, SpliceKind};
pub use resolve::{resolve, AssetInfo, Library, Plan, RightsWindow, SharedPlan};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScheduleError {
    #[error("item {item:?}: {field}: {why}")]
    Item {
        item: String,
        field: String,
        why: String,
    },
    #[error("no item {0:?} in the schedule")]
    NoSuchItem(String),
    #[error("item {item:?} has aired or is on air: {why}")]
    Aired { item: String, why: String },
    #[error("{0}")]
    Nothing(String),
    #[error("{format} line {line}: {why}")]
    Import {
        format: &'static str,
        line: usize,
        why: String,
    },
}
