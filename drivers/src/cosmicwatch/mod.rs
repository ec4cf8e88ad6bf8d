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
    found: crate::Found::Serial {
        chips: &[&crate::serial::chips::FT232R, &crate::serial::chips::RP2040],
        probe: crate::families::SerialProbe::Listen {
            bauds: &[9600, 115200],
            line: recognise,
        },
    },
    udev: "",
};

/// The model a printed line shows: v2's header title or event line, or a v3X event line
/// (with any of its optional columns).
fn recognise(line: &[u8]) -> Option<&'static str> {
    use protocol::{parse_v2, parse_v3, V2Line, V3Line};
    if line.starts_with(b"### CosmicWatch") || matches!(parse_v2(line), Ok(V2Line::Event(_))) {
        return Some("CosmicWatch v2");
    }
    let v3 = (0..8u8).any(|bits| {
        let cols = V3Columns {
            environment: bits & 1 != 0,
            motion: bits & 2 != 0,
            name: bits & 4 != 0,
        };
        matches!(parse_v3(line, cols), Ok(V3Line::Event(_)))
    });
    v3.then_some("CosmicWatch v3X")
}
