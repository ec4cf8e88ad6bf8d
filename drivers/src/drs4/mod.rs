//! PSI DRS4 evaluation board (SiPM/PMT waveform digitizer), driven directly over USB with
//! the register protocol of PSI's DRS library.
//!
//! `protocol` holds the wire facts (pure), `calibration` the per-cell tables, `eeprom` the
//! layout PSI's library reads those tables from in the board's EEPROM (pure), `driver` the
//! [`Source`] over any [`UsbTransport`](crate::usb::UsbTransport),
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

use std::time::{Duration, Instant};

use crate::driver::{DriverError, ReadOutcome, Source};
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
    let mut out = vec![0u8; board.layout().event_size()];
    board.start()?;
    let started = Instant::now();
    let mut written = 0u64;
    while written < events {
        match board.read_event(&mut out, Duration::from_secs(1))? {
            ReadOutcome::Event(_) => written += 1,
            ReadOutcome::Idle | ReadOutcome::End => {
                return Err(DriverError::Config {
                    device: "sim:drs4".into(),
                    detail: "simulated board did not trigger within 1 s".into(),
                })
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    board.stop()?;
    Ok(BenchFigures {
        events: written,
        bytes: written * out.len() as u64,
        seconds,
    })
}
