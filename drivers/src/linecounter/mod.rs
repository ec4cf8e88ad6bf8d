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
    found: crate::Found::Serial {
        chips: &[
            &crate::serial::chips::CP210X,
            &crate::serial::chips::ARDUINO,
        ],
        probe: crate::families::SerialProbe::Listen {
            bauds: &[9600, 115200],
            line: recognise,
        },
    },
    udev: "",
};

/// What a line printed without being asked shows of its model: a MightyOhm reading or banner,
/// or an integer alone (a GC10's CPM, which a counting sketch may print as well; a sketch
/// printing anything else is recognised by no one).
pub const ONE_INTEGER: &str = "NetIO GC10 (or a sketch printing one integer a line)";

fn recognise(line: &[u8]) -> Option<&'static str> {
    if protocol::parse_mightyohm(line).is_ok() {
        Some("MightyOhm kit")
    } else if protocol::parse_gc10(line).is_ok() {
        Some(ONE_INTEGER)
    } else {
        None
    }
}
