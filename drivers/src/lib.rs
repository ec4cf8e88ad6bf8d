//! Device drivers for daq-engine.
//!
//! One module per device family. Each family splits into `protocol` (pure, byte-level,
//! no I/O), `transport` (serialport or rusb) and `simulator` (speaks the same protocol);
//! `README.md` beside this crate says how to add a family: a folder and one line in
//! [`FAMILIES`].

pub mod driver;
pub mod families;

// Serial detectors (issue 6).
pub mod cosmicwatch;
pub mod gmc;
pub mod linecounter;
pub mod probe;
pub mod serial;

// USB oscilloscopes and digitizers (issue 7).
pub mod drs4;
pub mod hantek6022;
pub mod picoscope;

// Network digitizers (issue 15).
pub mod redpitaya;
pub mod usb;

#[cfg(test)]
mod testing;

pub use driver::{
    ChannelScale, DeviceInfo, DriverError, EventInfo, EventLayout, Family, FieldSpec, ReadOutcome,
    Source,
};
pub use families::{FamilyInfo, Found, SerialProbe, FAMILIES};
