//! Quality checks on decoded media: loudness, and the QC of a file (decode health, black,
//! freeze, silence, essence against metadata). Asks `av` for samples and scans and never touches
//! libav itself.

mod check;
pub mod loudness;

pub use check::{check_file as check, QcCheck, QcError, QcReport};
