//! Hantek 6022BE/BL USB oscilloscope (and the Voltcraft DSO-2020), driven directly over USB.
//!
//! `protocol` holds the wire facts (pure), `firmware` the FX2 firmware image and upload,
//! `driver` the [`crate::Source`] over any [`crate::usb::UsbTransport`],
//! `simulator` a device answering the same transfers. Guarantees: the driver code that runs
//! against the simulator is the code that runs against hardware. Must never print.

pub mod driver;
pub mod firmware;
pub mod protocol;
pub mod simulator;

#[cfg(test)]
mod reconnect_tests;

pub use driver::{
    Edge, EventCutter, Hantek6022, HantekConfig, SampleFormat, StreamCounters, Trigger,
};
pub use protocol::{Calibration, FirmwareFlavour, Gain, Model};
pub use simulator::{SimHantek, SimHantekConfig, SimSignal};

/// The family as the scan, udev and `daq-engine devices` know it: cold, custom-firmware
/// and fx2lafw ids (HARDWARE.md A.11).
pub const FAMILY: crate::FamilyInfo = crate::FamilyInfo {
    family: crate::Family::Hantek6022,
    name: "hantek6022",
    found: crate::Found::Usb {
        what: "Hantek 6022",
        ids: &protocol::USB_IDS,
        model: |vendor, product| format!("Hantek 6022 ({:?})", protocol::identify(vendor, product)),
    },
    udev: include_str!("udev.rules"),
};

use crate::driver::DriverError;
use crate::usb::BenchFigures;

/// Measures the simulated scope through the whole driver (reader thread, buffer pool,
/// event cutter) into one event buffer: `events` free-running events of
/// `samples_per_event` two-channel samples in `format`, 256 KiB transfers.
pub fn bench_simulated(
    events: u64,
    samples_per_event: usize,
    format: SampleFormat,
) -> Result<BenchFigures, DriverError> {
    let config = HantekConfig {
        sample_rate: 16_000_000,
        samples_per_event,
        format,
        ..HantekConfig::default()
    };
    bench_simulated_with(config, events)
}

/// As [`bench_simulated`] with any driver configuration (transfer size, pool, trigger), on
/// an unpaced simulated scope producing a sample counter.
pub fn bench_simulated_with(
    config: HantekConfig,
    events: u64,
) -> Result<BenchFigures, DriverError> {
    let sim = SimHantek::new(SimHantekConfig::default());
    let mut scope = Hantek6022::open(&mut sim.bus(), config)?;
    BenchFigures::measure(
        &mut scope,
        events,
        "sim:hantek6022",
        "simulator delivered nothing for 1 s",
    )
}
