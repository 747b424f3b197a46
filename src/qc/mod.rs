//! Quality checks on decoded media. Owns the measurements (loudness today); asks `av` for samples
//! and never touches libav itself.

pub mod loudness;
