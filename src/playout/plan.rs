//! What a channel airs, counted in frames of the channel's house rate from the channel's epoch
//! (frame 0 = the channel's first frame ever; wall time = epoch + frames × frame duration), and
//! what actually aired. Pure data: no libav, tokio or SQL.

use std::path::PathBuf;

/// The material of a slot.
#[derive(Debug, Clone, PartialEq)]
pub enum Material {
    /// A catalog file, read from `in_frame` (frames of the house rate into the file).
    File {
        path: PathBuf,
        asset_id: String,
        house_id: String,
        in_frame: u64,
    },
    /// A live source of the live service (by its id), until the slot ends or it is cued away.
    Live { source: String },
    /// The channel's filler (a gap, an item shorter than its slot, a substitution).
    Filler,
}

/// An SCTE-35 break inside a slot.
#[derive(Debug, Clone, PartialEq)]
pub struct Break {
    /// Frames from the slot's start to the break's out point.
    pub at: u64,
    pub duration: u64,
    /// splice_event_id / segmentation_event_id.
    pub event_id: u32,
    /// `splice_insert` when false, `time_signal` with segmentation descriptors when true.
    pub time_signal: bool,
}

/// A secondary event inside a slot.
#[derive(Debug, Clone, PartialEq)]
pub enum Secondary {
    LogoOn { at: u64 },
    LogoOff { at: u64 },
}

/// One slot of the air timeline: from `start` for `frames` frames.
#[derive(Debug, Clone, PartialEq)]
pub struct AirSlot {
    /// The schedule item's id ("" for filler the core inserted in a gap).
    pub item: String,
    pub start: u64,
    pub frames: u64,
    pub material: Material,
    pub breaks: Vec<Break>,
    pub secondary: Vec<Secondary>,
}

impl AirSlot {
    pub fn end(&self) -> u64 {
        self.start + self.frames
    }
}

/// Why a slot aired other than scheduled.
#[derive(Debug, Clone, PartialEq)]
pub enum Substitution {
    /// The file was missing, unreadable or ended early: filler for (the rest of) the slot.
    Unplayable(String),
    /// The live source was lost: the live failover's backup or slate.
    LiveLost(String),
    /// An operator skipped, cued or put up the emergency slate.
    Operator(String),
}

/// What the engine reports for each slot once it has left air.
#[derive(Debug, Clone, PartialEq)]
pub struct Aired {
    pub slot: AirSlot,
    /// The frame it actually started and how many frames it actually ran.
    pub start: u64,
    pub frames: u64,
    pub substitution: Option<Substitution>,
}

/// The engine's view of a channel's schedule, asked at every slot boundary and again while a
/// slot is on air (so that edits, skips and cues made on air take effect): the slot on air at
/// `frame`, filler slots for gaps included. `None`: nothing is scheduled (the engine airs filler).
pub trait Timeline: Send + Sync {
    fn slot_at(&self, frame: u64) -> Option<AirSlot>;
}
