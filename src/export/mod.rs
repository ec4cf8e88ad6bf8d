//! Export: run files that physicists open with h5py, ROOT or MATLAB, and small CSV files.
//!
//! - [`hdf5`]: the HDF5 run-file writer (one group per buffer, compound `data` exactly the
//!   buffer's dtype, `metadata`, histograms, run attributes; SWMR, periodic flush, rotation,
//!   typed errors on a full disk) and a reader of what it wrote.
//! - [`inspect()`]: a readable summary of a run file for `daq-engine inspect FILE.h5`.
//! - [`csv`]: a buffered CSV writer for feature records.
//! - [`recover`]: makes the files of a run that did not finish (killed, power cut) open
//!   everywhere, with equal `data` and `metadata`, and writes its summary.
//! - [`mimo`]: mimoCoRB2's own data files and its `data.*` built-ins around them.
//! - [`disk`]: free space under a run directory, watched while the run goes on.
//! - [`spin`]: tells libhdf5 looping over a damaged file, for what reads one.
//! - [`mod@bench`]: the `daq-engine bench hdf5` measurement.
//!
//! Guarantees: nothing here allocates per event; every failure is an [`ExportError`] naming
//! the file. Must never overwrite an existing run file or drop an event silently.

pub mod bench;
pub mod csv;
mod deflate;
pub mod disk;
mod error;
pub mod function;
pub mod hdf5;
mod inspect;
pub mod mimo;
mod raw;
mod read;
pub mod recover;
pub mod replay;
pub mod spin;

pub use error::{ExportError, NotRecoverable};
pub use inspect::{inspect, inspect_apart, setup_text};
pub use read::{read_buffer, BufferContents};
