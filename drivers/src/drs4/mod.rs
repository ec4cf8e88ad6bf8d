//! PSI DRS4 evaluation board (SiPM/PMT waveform digitizer), driven directly over USB with
//! the register protocol of PSI's DRS library.
//!
//! `protocol` holds the wire facts (pure), `calibration` the per-cell tables, `eeprom` the
//! layout PSI's library reads those tables from in the board's EEPROM (pure), `driver` the
//! [`Source`](crate::driver::Source) over any [`UsbTransport`](crate::usb::UsbTransport),
//! `simulator` a board answering the same transfers. Guarantees: the driver code that runs
//! against the simulator is the code that runs against hardware. Must never print.

pub mod calibration;
pub mod driver;
pub mod eeprom;
pub mod protocol;
pub mod simulator;
#[cfg(test)]
mod tests;

pub use calibration::Drs4Calibration;
pub use driver::{BoardIdentity, Drs4, Drs4Bus, Drs4Config, Drs4TriggerSource};
pub use simulator::{SimDrs4, SimDrs4Config};

/// The family as the scan, udev and `daq-engine devices` know it.
pub const FAMILY: crate::FamilyInfo = crate::FamilyInfo {
    family: crate::Family::Drs4,
    name: "drs4",
    found: crate::Found::Usb {
        what: "DRS4",
        ids: &[protocol::USB_ID],
        model: |_, _| "PSI DRS4 evaluation board".to_string(),
    },
    udev: include_str!("udev.rules"),
};

use crate::driver::DriverError;
use crate::usb::BenchFigures;

/// Measures the simulated board through the whole driver (register protocol, RAM readout,
/// per-cell calibration) into one event buffer: `events` hardware-triggered events.
pub fn bench_simulated(events: u64, time_axis: bool) -> Result<BenchFigures, DriverError> {
    let sim = SimDrs4::new(SimDrs4Config {
        log_transfers: false,
        ..SimDrs4Config::default()
    });
    let mut board = Drs4::open(
        &mut sim.bus(),
        Drs4Config {
            time_axis,
            ..Drs4Config::default()
        },
    )?;
    // The simulated board triggers by itself and never ends.
    BenchFigures::measure(
        &mut board,
        events,
        "sim:drs4",
        "simulated board did not trigger within 1 s",
    )
}
