//! antenne: a broadcast media appliance. See `../shared/DESIGN.md` for the shape; each module's
//! `//!` says what it owns.

pub mod api;
pub mod app;
pub mod av;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod hub;
pub mod ingest;
pub mod jobs;
pub mod link;
pub mod naming;
pub mod output;
pub mod pipeline;
pub mod playout;
pub mod profile;
pub mod qc;
pub mod srt;
pub mod storage;
pub mod telemetry;
pub mod timecode;
pub mod web;
