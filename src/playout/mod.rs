//! Playout: 24/7 channels from schedules. `plan` is the contract between the two halves: the
//! schedule core (pure, clock-injected: rundowns, validation, imports, EPG, as-run records, SCTE-35
//! sections) turns a channel's schedule into frame-counted [`plan::AirSlot`]s, and the channel
//! engine airs them and reports each as it actually went ([`plan::Aired`]).
//!
//! The pure parts (`plan`, `schedule`) import no libav, tokio or SQL; `service` keeps channels,
//! rundowns and the as-run log in the catalog and drives the engine through
//! [`service::ChannelControl`]; the engine is the only part that runs media.

pub mod engine;
pub mod filler;
pub mod plan;
pub mod schedule;
pub mod scte35;
pub mod service;
