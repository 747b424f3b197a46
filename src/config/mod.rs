//! Typed configuration and its value types: the appliance configuration (defaults → file →
//! environment → validation) and user-written values (bit rates, rates, sizes, the hardware
//! [`Backend`] names). At the bottom: imports nothing of the domain (no av, catalog, jobs, api),
//! only the pure `naming` core to validate the house-ID template.

pub mod appliance;
mod backend;
pub mod delivery;
pub mod playout;
pub mod refused;
pub mod storage;
mod values;

pub use appliance::{ApplianceConfig, ByteSize, ConfigError};
pub use backend::Backend;
pub use values::{Bitrate, Cidr, Rate, ValueError};
