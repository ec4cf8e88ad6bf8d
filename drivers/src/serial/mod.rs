//! Serial transport shared by the serial detector families (GMC, line counters,
//! CosmicWatch), the pseudo-terminal harness their simulators run on, and the scan for
//! serial devices.
//!
//! Guarantees: a [`SerialLink`] reads through one fixed buffer (no allocation after open),
//! knows the byte offset of everything it hands out (for error messages), and turns every
//! sign of a vanished device (EOF, EIO, hang-up) into [`DriverError::Disconnected`]. It
//! never guesses at data: a timeout is "nothing yet", never an empty reading.
//!
//! Must never: parse device protocols (that is each family's `protocol` module), or block
//! longer than the timeout it was given (reconnect waits are bounded by the backoff limit).
//!
//! [`DriverError::Disconnected`]: crate::DriverError::Disconnected

pub mod chips;
mod link;
mod pty;
pub mod record;
pub mod scan;
pub mod simclock;
pub mod text;

pub use link::{Arrived, Backoff, LineUse, LinkStats, PortSettings, SerialLink};
pub use pty::{ScriptedDevice, SimulatedDevice, SimulatorHandle, Wire};
pub use scan::{scan, scan_in, scan_summary, usb_identity};
