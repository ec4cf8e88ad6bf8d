//! Device importers: the `daq-drivers` sources as Importer functions, device discovery and
//! udev installation. (Filled in by the device-integration work.)

use crate::engine::Function;

/// Importer functions for the supported devices.
pub fn functions() -> Vec<Function> {
    Vec::new()
}
