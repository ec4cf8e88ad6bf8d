//! PicoScope oscilloscopes through Pico's own driver libraries, loaded at run time.
//!
//! Pico's USB protocol is closed (HARDWARE.md A.10), so this driver binds `libps2000a.so`,
//! `libps3000a.so` / `libps5000a.so` with `libloading` from a configurable path; daq-drivers builds and runs
//! without them and says what to install when one is missing. One implementation serves
//! every family: what differs (function names, argument shapes, timebase formulas, ranges)
//! is a [`FamilyTable`]. Tests run against `drivers/fake-picosdk`, a library with the same C
//! functions, loaded through the very same path.
//!
//! Guarantees: see [`scope`] (no allocation per event, buffers registered once, gapless
//! streaming, typed errors with Pico's status names) and [`usb`] (scan never panics).
//! Never: prints, or touches a device other than through Pico's library (USB scanning only
//! reads descriptors).

pub mod config;
pub mod family;
pub mod library;
pub mod scope;
pub mod status;
pub mod usb;

#[cfg(test)]
mod reconnect_tests;

use std::time::{Duration, Instant};

pub use config::{
    Acquisition, ChannelConfig, Coupling, DigitalPort, PicoScopeConfig, SampleFormat,
    ThresholdDirection, TriggerConfig, VoltageRange, LOGIC_LEVEL_MAX_V,
};
pub use family::{
    family_by_name, family_for_pid, family_serves_model, model_channels, model_has_digital_ports,
    same_model, FamilyTable, Resolution, Timebases, PS2000A, PS3000A, PS5000A,
};
pub use library::PicoLibrary;
pub use scope::{PicoCounters, PicoScope};
pub use status::{PicoError, PicoStatus};
pub use usb::{scan_usb, UsbScanError};

/// The family as the scan, udev and `daq-engine devices` know it: every product of Pico's
/// vendor id, scanned from their descriptors.
pub const FAMILY: crate::FamilyInfo = crate::FamilyInfo {
    family: crate::Family::PicoScope,
    name: "picoscope",
    found: crate::Found::Scan {
        what: "PicoScope (0ce9:*)",
        scan: || scan_usb().map_err(|e| e.to_string()),
    },
    udev: include_str!("udev.rules"),
};

use crate::driver::{ReadOutcome, Source};

/// What [`bench_fake`] measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BenchFigures {
    /// Events read.
    pub events: u64,
    /// Bytes written into the event buffer.
    pub bytes: u64,
    /// Wall-clock seconds from start to the last event.
    pub seconds: f64,
    /// events / seconds.
    pub events_per_s: f64,
    /// bytes / 1e6 / seconds.
    pub mb_per_s: f64,
    /// Events whose read only copied a fetched capture out (no library call): the
    /// driver's own per-event work.
    pub copy_events: u64,
    /// Rate of those reads alone: what the driver path could sustain.
    pub copy_events_per_s: f64,
    /// The same in MB/s.
    pub copy_mb_per_s: f64,
}

/// Opens the scope `config` describes (normally the fake library: set `config.library`),
/// reads `events` events into one reused byte buffer as an Importer would, and reports the
/// rate. Idle reads count towards the time; a read that stays idle for 10 s is an error.
/// Besides the overall rate (which includes the library's acquisition, for the fake its
/// signal generation), it reports the rate of the reads that only copied a fetched capture
/// out: the driver's own cost per event.
pub fn bench_fake(config: &PicoScopeConfig, events: u64) -> Result<BenchFigures, PicoError> {
    let mut scope = PicoScope::open(config.clone())?;
    let size = scope.layout().event_size();
    let mut out = vec![0u8; size];
    let t0 = Instant::now();
    scope.start_capture()?;
    let mut got = 0u64;
    let mut copy_events = 0u64;
    let mut copy_seconds = 0f64;
    let mut idle_since: Option<Instant> = None;
    while got < events {
        let batches = scope.counters().batches;
        let t = Instant::now();
        let outcome = scope.read_capture(&mut out, Duration::from_millis(100))?;
        let dt = t.elapsed().as_secs_f64();
        match outcome {
            ReadOutcome::Event(_) => {
                got += 1;
                idle_since = None;
                if scope.counters().batches == batches {
                    copy_events += 1;
                    copy_seconds += dt;
                }
            }
            ReadOutcome::Idle | ReadOutcome::End => {
                let since = *idle_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(10) {
                    return Err(PicoError::Config {
                        device: scope.info().model.clone(),
                        detail: format!(
                            "no event for 10 s after {got} of {events}; is the trigger reachable?"
                        ),
                    });
                }
            }
        }
    }
    let seconds = t0.elapsed().as_secs_f64().max(1e-9);
    scope.stop_capture()?;
    let bytes = got * size as u64;
    let copy_seconds = copy_seconds.max(1e-9);
    Ok(BenchFigures {
        copy_events,
        copy_events_per_s: copy_events as f64 / copy_seconds,
        copy_mb_per_s: (copy_events * size as u64) as f64 / 1e6 / copy_seconds,
        events: got,
        bytes,
        seconds,
        events_per_s: got as f64 / seconds,
        mb_per_s: bytes as f64 / 1e6 / seconds,
    })
}
