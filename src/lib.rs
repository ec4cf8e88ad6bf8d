//! daq-engine: a hard-real-time data-acquisition engine for physics detectors.
//!
//! Setup files describe ring buffers in shared memory and the worker processes that connect
//! them, in the shape mimoCoRB2 users know (`Buffers`, `Workers`, `sources`, `sinks`,
//! `observes`). See `DESIGN.md` in the repository's shared folder and the README.

pub mod analysis;
pub mod cli;
pub mod clock;
pub mod devices;
pub mod dtype;
pub mod engine;
pub mod export;
pub mod fsio;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod monitor;
pub mod procfs;
pub mod python;
pub mod registry;
pub mod ring;
pub mod ring_bench;
pub mod run_dir;
pub mod runtime;
pub mod setup;
pub mod shm;
pub mod worker;
