//! One error enum per ring operation: creating, attaching, taking a role, claiming a slot.

use crate::shm::ShmError;
use std::path::PathBuf;

/// Errors creating a ring.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The spec is not usable.
    #[error("ring '{name}': {problem}")]
    BadSpec {
        /// The ring.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// A live process still uses a ring of that name.
    #[error("ring '{path}' is in use by the running process {pid}; stop that run first, or choose another run directory")]
    InUse {
        /// The file.
        path: PathBuf,
        /// Its creator.
        pid: u32,
    },
    /// The shared-memory file could not be made.
    #[error(transparent)]
    Shm(#[from] ShmError),
}

/// Errors attaching to a ring.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// Could not open or map.
    #[error(transparent)]
    Shm(#[from] ShmError),
    /// Shorter than a header.
    #[error("{path}: {len} bytes is too short to be a ring (the header alone is {need})")]
    TooShort {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: usize,
        /// Header size.
        need: usize,
    },
    /// Not a daq-engine ring.
    #[error("{path}: not a daq-engine ring (magic {found:02x?})")]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The first bytes.
        found: [u8; 8],
    },
    /// Another layout version.
    #[error("{path}: ring layout version {found}, this program reads version {expected}; use the daq-engine that created it")]
    Version {
        /// The file.
        path: PathBuf,
        /// In the file.
        found: u32,
        /// Ours.
        expected: u32,
    },
    /// The creator has not finished (or crashed while) setting it up.
    #[error("{path}: ring not initialised (its creator is starting or crashed)")]
    NotReady {
        /// The file.
        path: PathBuf,
    },
    /// Header fields contradict each other or the file size.
    #[error("{path}: corrupt ring header: {problem}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What contradicts what.
        problem: String,
    },
    /// The record type differs from what the attacher expects.
    #[error("{path}: data_dtype differs: ring has {found}, expected {expected}")]
    Schema {
        /// The file.
        path: PathBuf,
        /// In the ring.
        found: String,
        /// Expected.
        expected: String,
    },
    /// data_length differs.
    #[error("{path}: data_length differs: ring has {found}, expected {expected}")]
    Length {
        /// The file.
        path: PathBuf,
        /// In the ring.
        found: usize,
        /// Expected.
        expected: usize,
    },
}

/// Errors taking a role (producer, group member) in a ring.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RoleError {
    /// Another live process is the producer.
    #[error("ring '{ring}' already has a producer (pid {pid})")]
    ProducerTaken {
        /// The ring.
        ring: String,
        /// Its pid.
        pid: u32,
    },
    /// That group or member does not exist.
    #[error("ring '{ring}' has no member {member} in group {group}")]
    NoSuchMember {
        /// The ring.
        ring: String,
        /// Group asked.
        group: usize,
        /// Member asked.
        member: usize,
    },
    /// Another live process is that member.
    #[error("ring '{ring}', group {group}, member {member} is taken by pid {pid}")]
    MemberTaken {
        /// The ring.
        ring: String,
        /// Group.
        group: usize,
        /// Member.
        member: usize,
        /// Its pid.
        pid: u32,
    },
}

/// What a producer's claim ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// `drop` policy, ring full: the event was counted as lost.
    #[error("ring full: event dropped and counted as lost")]
    Full,
    /// `block` policy: no room within the timeout (nothing counted; try again).
    #[error("ring full: no room within the timeout")]
    Timeout,
}
