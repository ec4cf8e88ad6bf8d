//! CosmicWatch desktop muon detectors, v2 (Arduino Nano) and v3X (RP2040): line parsers,
//! a driver writing every printed field into a feature record, and simulators with
//! realistic event lines and Poisson timing.
//!
//! Guarantees: one record per detector event; the detector's timestamp and dead time are
//! kept in the record and reported in `EventInfo`; anything unparseable is an error with its
//! byte offset. Must never: send commands to the detector (opening a v2 port already resets
//! the Arduino).

mod driver;
pub mod protocol;
pub mod simulator;

pub use driver::{open, CosmicWatch, CosmicWatchConfig, CosmicWatchVersion};
pub use protocol::V3Columns;
pub use simulator::{simulate, CosmicWatchGen, CosmicWatchSimConfig, SimVersion};

/// The family as the scan, udev and `daq-engine devices` know it.
pub const FAMILY: crate::FamilyInfo = crate::FamilyInfo {
    family: crate::Family::CosmicWatch,
    name: "cosmicwatch",
    found: crate::Found::Serial(&[&crate::serial::chips::FT232R, &crate::serial::chips::RP2040]),
    udev: "",
};
