//! Quality checks on decoded media: loudness, and the QC of a file (decode health, black,
//! freeze, silence, essence against metadata). Asks `av` for samples and scans and never touches
//! libav itself.
//! Owns its rules ([`QcRules`], which workflows carry). Imports `av` only: never jobs, catalog or
//! api.

mod check;
pub mod loudness;
mod rules;

pub use check::{check_file as check, QcCheck, QcError, QcReport};
pub use rules::QcRules;
