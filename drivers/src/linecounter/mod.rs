//! Simple serial Geiger counters that print text lines: the MightyOhm kit, NetIO GC10, and
//! Arduino-style sketches described by a configurable [`LineGrammar`].
//!
//! Guarantees: one event per reading line; banners and comments produce none; a line that
//! does not parse is an error with its byte offset, never a zero count. Must never: send
//! anything to the device (these counters take no commands).

mod driver;
pub mod protocol;
pub mod simulator;

pub use driver::{open, LineCounter, LineCounterConfig, LineFormat};
pub use protocol::{GrammarField, LineGrammar, Separator};
pub use simulator::{simulate, LineCounterSim, LineSimConfig, SimFormat};

/// The family as the scan, udev and `daq-engine devices` know it; also the guess for a
/// serial port behind no chip it knows.
pub const FAMILY: crate::FamilyInfo = crate::FamilyInfo {
    family: crate::Family::LineCounter,
    name: "line-counter",
    found: crate::Found::Serial(&[
        &crate::serial::chips::CP210X,
        &crate::serial::chips::ARDUINO,
    ]),
    udev: "",
};
