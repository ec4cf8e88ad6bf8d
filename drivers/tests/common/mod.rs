//! What the serial detectors' tests share: reading events off a simulator, a device that
//! sends a fixed script, a simulated CosmicWatch or GMC with its driver, and the byte offset a refused
//! line is reported at.

#![allow(dead_code)] // each test file uses its own part

use std::time::Duration;

use daq_drivers::cosmicwatch::{self, CosmicWatch, CosmicWatchConfig, CosmicWatchSimConfig};
use daq_drivers::gmc::{self, Gmc, GmcConfig, GmcSimConfig};
use daq_drivers::serial::{ScriptedDevice, SimulatorHandle};
use daq_drivers::{DriverError, EventInfo, ReadOutcome, Source};

/// Reads `n` events (bytes and info), waiting at most 50 idle reads of 200 ms in a row.
pub fn read_n(dev: &mut dyn Source, n: usize) -> Vec<(Vec<u8>, EventInfo)> {
    let mut out = vec![0u8; dev.layout().event_size()];
    let mut got = Vec::new();
    let mut idle = 0;
    while got.len() < n {
        match dev
            .read_event(&mut out, Duration::from_millis(200))
            .unwrap()
        {
            ReadOutcome::Event(info) => got.push((out.clone(), info)),
            ReadOutcome::Idle => {
                idle += 1;
                assert!(idle < 50, "simulator stopped");
            }
            ReadOutcome::End => panic!("end"),
        }
    }
    got
}

/// A pty device that sends `script` once when plugged in.
pub fn scripted(script: &'static [u8]) -> SimulatorHandle {
    SimulatorHandle::start("script", move |_| Box::new(ScriptedDevice::new(script))).unwrap()
}

/// A simulated CosmicWatch on a pty and the driver opened on it with `config` (its path
/// filled in); the simulator runs as long as its handle lives.
pub fn open_cosmicwatch(
    sim: CosmicWatchSimConfig,
    config: CosmicWatchConfig,
) -> (SimulatorHandle, CosmicWatch) {
    let (handle, path) = cosmicwatch::simulate(sim).unwrap();
    let dev = cosmicwatch::open(CosmicWatchConfig { path, ..config }).unwrap();
    (handle, dev)
}

/// A simulated GMC counter on a pty and the driver opened on it with `config` (its path
/// filled in); the simulator runs as long as its handle lives.
pub fn open_gmc(sim: GmcSimConfig, config: GmcConfig) -> (SimulatorHandle, Gmc) {
    let (handle, path) = gmc::simulate(sim).unwrap();
    let dev = gmc::open(GmcConfig { path, ..config }).unwrap();
    (handle, dev)
}

/// One read that must give an event.
pub fn expect_event(dev: &mut dyn Source, out: &mut [u8], timeout: Duration) {
    let got = dev.read_event(out, timeout).unwrap();
    assert!(matches!(got, ReadOutcome::Event(_)), "{got:?}");
}

/// The byte offset of the bad data a read refused; panics on any other outcome.
pub fn refused_at(read: Result<ReadOutcome, DriverError>) -> u64 {
    match read {
        Err(DriverError::Protocol { offset, .. }) => offset,
        other => panic!("{other:?}"),
    }
}

/// The little-endian `u32` at byte `at`.
pub fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// The little-endian `u64` at byte `at`.
pub fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}
