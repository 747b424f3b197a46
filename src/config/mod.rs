//! Typed configuration and its value types. Owns parsing of user-written values (bit rates,
//! rates); imports nothing from the media engine.

mod values;

pub use values::{Bitrate, Rate, ValueError};
