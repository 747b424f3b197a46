//! Typed configuration and its value types: the appliance configuration (defaults → file →
//! environment → validation) and user-written values (bit rates, rates, sizes). Imports nothing
//! from the media engine.

pub mod appliance;
mod values;

pub use appliance::{ApplianceConfig, ByteSize, ConfigError};
pub use values::{Bitrate, Cidr, Rate, ValueError};
