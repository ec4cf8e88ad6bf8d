//! Device drivers for daq-engine.
//!
//! One module per device family. Each family splits into `protocol` (pure, byte-level,
//! no I/O), `transport` (serialport or rusb) and `simulator` (speaks the same protocol).

pub mod driver;

pub use driver::{DeviceInfo, DriverError, EventInfo, EventLayout, Family, FieldSpec, ReadOutcome, Source};
