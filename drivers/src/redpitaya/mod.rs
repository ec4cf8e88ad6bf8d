//! Red Pitaya STEMlab 125-14 over TCP: the MCPHA server (pavel-demin's red-pitaya-notes, and
//! the fork with the streaming "start daq" command that mimoCoRB2 uses), and the official
//! SCPI server. For each: the pure protocol, a driver on `std::net`, and a simulator that is
//! a real TCP server on loopback, so the driver runs the same code against it as against a
//! board (HARDWARE.md Part 2, sections R and S).

pub mod bench;
mod driver;
pub mod protocol;
pub mod scpi;
mod sim_server;
pub mod simulator;
#[cfg(test)]
mod tests;

pub(crate) use driver::{locate, Redial};
pub use driver::{
    open, probe, resolve, GeneratorConfig, Mcpha, McphaConfig, McphaMode, McphaStats, PhaConfig,
    ScopeConfig, TraceAcquisition,
};
pub use sim_server::SimServer;
pub use simulator::{McphaSimConfig, ScopeSettings, SimMcpha};

/// The family as `daq-engine devices --probe` knows it: network devices are not scanned
/// and need no udev rule.
pub const FAMILY: crate::FamilyInfo = crate::FamilyInfo {
    family: crate::Family::RedPitaya,
    name: "redpitaya",
    found: crate::Found::Network,
    udev: "",
};
