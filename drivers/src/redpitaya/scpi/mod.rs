//! The Red Pitaya's official SCPI server (port 5000) as a second transport: the pure
//! protocol, a driver on `std::net` that writes the same `{IN1: int16, IN2: int16}` traces
//! as the MCPHA driver, and a byte-exact simulator on loopback (HARDWARE.md Part 2,
//! section S).

mod driver;
pub mod protocol;
pub mod simulator;
#[cfg(test)]
mod tests;

pub use driver::{open_scpi, probe_scpi, Scpi, ScpiConfig, ScpiStats};
pub use simulator::{AcqSettings, ScpiSimConfig, SimScpi, TriggerWord};
