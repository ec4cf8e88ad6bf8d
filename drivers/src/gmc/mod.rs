//! GQ Electronics GMC Geiger counters (GQ-RFC1201 and GQ-RFC1801): the pure protocol, a
//! driver on the serial transport, and a byte-exact simulator on a pseudo-terminal.
//!
//! Guarantees: counts come only from replies of the size the model's class specifies (or the
//! configured override); everything else is an error naming the byte offset. Must never:
//! send a command while a heartbeat may be running without stopping it first.
//!
//! Events: in heartbeat mode one event per device second with field `cps: u4`; in polled
//! mode one event per poll with field `cpm: u4`.

mod driver;
pub mod protocol;
pub mod simulator;

pub use driver::{open, Gmc, GmcConfig, GmcMode, PROBE_BAUDS};
pub use protocol::{CountWidth, ModelClass};
pub use simulator::{counts_for_seed, simulate, GmcModel, GmcSimConfig};

/// The family as the scan, udev and `daq-engine devices` know it.
pub const FAMILY: crate::FamilyInfo = crate::FamilyInfo {
    family: crate::Family::Gmc,
    name: "gmc",
    found: crate::Found::Serial {
        chips: &[&crate::serial::chips::CH340],
        probe: crate::families::SerialProbe::Ask(ask),
    },
    udev: "",
};

/// Opens the counter as the driver does (`<GETVER>>` at 115200, then 57600) and says what
/// it answered: its model, firmware and serial number.
fn ask(path: &std::path::Path) -> Result<crate::DeviceInfo, crate::DriverError> {
    use crate::Source;
    let gmc = open(GmcConfig {
        path: path.to_path_buf(),
        ..GmcConfig::default()
    })?;
    Ok(gmc.info().clone())
}
