//! The engine: the supervisor that creates the rings and runs every worker as its own
//! process, and the worker-process side of that contract.

pub mod builtin;
pub mod plan;
pub mod process;
pub mod registry;

pub use plan::{BufferPlan, Plan, Restart, WorkerPlan};
pub use registry::{Build, Function, Registry};
