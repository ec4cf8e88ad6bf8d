//! Shared-memory event rings: one producer, consumer groups, observers.
//!
//! Guarantees:
//! - **Single producer, wait-free publish.** Writing an event is a claim of the next slot,
//!   in-place writes, and one store. Under the `block` policy a full ring makes the producer
//!   wait (spin, then sleep on a futex) and the wait is reported as dead time; under `drop`
//!   the producer never waits and every refused event is counted as lost.
//! - **Consumer groups.** Every group sees every event (broadcast); inside a group each event
//!   goes to exactly one member process (work sharing), and each member sees its events in
//!   publish order. Readers borrow slots in place (zero copy) and release them when done.
//! - **Observers never hold the producer back.** They copy the latest published event and
//!   validate the copy with the slot's sequence number; a torn copy is retried, never returned.
//! - **End of stream** propagates: readers drain everything published, then see the end.
//! - **Idle costs nothing.** Waiting spins briefly, then sleeps on a futex in the mapping.
//! - **Nothing allocates, locks or makes a syscall while data flows** (a futex call happens
//!   only when a side actually sleeps or must wake a sleeper).
//! - **Attach is validated.** The region starts with a header (magic, layout version, schema
//!   hash, geometry, field table); attaching with other expectations, or to a truncated or
//!   garbage file, is a typed error, never undefined behaviour.
//! - **A dead reader does not wedge the ring**: the supervisor finds members whose process is
//!   gone and releases what they held ([`Ring::reclaim_dead`]).
//!
//! ```
//! use daq_engine::dtype::Dtype;
//! use daq_engine::ring::{Next, Policy, Ring, RingSpec};
//! use daq_engine::shm::{places, HugePages};
//! use std::time::Duration;
//!
//! let spec = RingSpec {
//!     name: format!("doc-example-{}", std::process::id()),
//!     dtype: Dtype::parse([("ch0", "f4")]).unwrap(),
//!     data_length: 16,
//!     slot_count: 8,
//!     policy: Policy::Block,
//!     groups: vec![1],
//! };
//! let ring = Ring::create(&places(HugePages::Off, None), &spec).unwrap();
//! let mut producer = ring.producer().unwrap();
//! let mut reader = ring.reader(0, 0).unwrap();
//! let mut slot = producer.claim(Duration::from_secs(1)).unwrap();
//! slot.data_mut()[0..4].copy_from_slice(&1.5f32.to_le_bytes());
//! slot.meta_mut().counter = 7;
//! slot.publish();
//! producer.close();
//! match reader.next(Duration::from_secs(1)) {
//!     Next::Event(ev) => assert_eq!(ev.meta().counter, 7),
//!     _ => panic!("expected the event"),
//! }
//! assert!(matches!(reader.next(Duration::from_secs(1)), Next::End));
//! ```

mod core;
pub(crate) mod sync;

#[cfg(all(test, loom))]
mod loom_tests;

use crate::dtype::{Dtype, Metadata, Scalar, MAX_FIELDS, MAX_FIELD_NAME};
use crate::shm::{Backing, ShmError, ShmFile, ShmPlace};
use core::{Claim, Control, Core, Group};
pub use core::{MAX_GROUPS, MAX_MEMBERS};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use sync::{AtomicU32, AtomicU64, Ordering};

const MAGIC: [u8; 8] = *b"DAQRING\0";
/// Layout version written into every ring header; bumped on any change to the layout.
pub const LAYOUT_VERSION: u32 = 1;
const READY: u32 = 0x5245_4459; // "READ"
const PAGE: usize = 4096;
/// Bytes before the data in every slot: sequence word and the metadata record.
pub const SLOT_HEADER: usize = 64;

/// A timeout in nanoseconds, saturating: `Duration::MAX` (or anything beyond ~584 years)
/// means "for ever", never a wrapped-around short wait.
fn nanos(timeout: Duration) -> u64 {
    u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX)
}

/// What a full ring does to its producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Policy {
    /// Lossless: the producer waits for room; the wait is booked as dead time.
    #[default]
    Block,
    /// The producer never waits; a refused event is counted as lost.
    Drop,
}

impl Policy {
    fn code(self) -> u32 {
        match self {
            Policy::Block => 0,
            Policy::Drop => 1,
        }
    }
    fn from_code(c: u32) -> Option<Policy> {
        match c {
            0 => Some(Policy::Block),
            1 => Some(Policy::Drop),
            _ => None,
        }
    }
    /// `block` or `drop`.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Block => "block",
            Policy::Drop => "drop",
        }
    }
}

/// What a ring is: the buffer's description plus its consumer groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingSpec {
    /// File name of the ring in its shared-memory directory.
    pub name: String,
    /// Record type.
    pub dtype: Dtype,
    /// Records per event.
    pub data_length: usize,
    /// Slots, a power of two ≥ 2.
    pub slot_count: usize,
    /// Full-ring policy.
    pub policy: Policy,
    /// Members (processes) of each consumer group, in group order; at most [`MAX_GROUPS`]
    /// groups of at most [`MAX_MEMBERS`] each. May be empty (nobody reads).
    pub groups: Vec<usize>,
}

/// Bytes of shared memory one ring takes (header, control, consumer groups, slots) for
/// events of `data_length` records of `record_size` bytes, `slot_count` slots and `groups`
/// consumer groups; None when that would not fit the address space.
pub fn ring_bytes(
    record_size: usize,
    data_length: usize,
    slot_count: usize,
    groups: usize,
) -> Option<usize> {
    data_length
        .checked_mul(record_size)
        .and_then(slot_size_for)
        .and_then(|slot_size| Geometry::new(slot_count, slot_size, groups))
        .map(|g| g.total)
}

impl RingSpec {
    /// Bytes per slot: the slot header plus the data, rounded up to a cache line
    /// (`usize::MAX` when that overflows; [`Ring::create`] refuses such a spec).
    pub fn slot_size(&self) -> usize {
        self.data_length
            .checked_mul(self.dtype.record_size())
            .and_then(slot_size_for)
            .unwrap_or(usize::MAX)
    }
}

#[repr(C)]
struct FieldEntry {
    name: [u8; MAX_FIELD_NAME + 1],
    code: u8,
    _pad: [u8; 3],
    offset: u32,
}

/// The first bytes of every ring file.
#[repr(C)]
struct Header {
    magic: [u8; 8],
    version: u32,
    /// READY once the creator finished initialising everything else.
    ready: AtomicU32,
    schema_hash: u64,
    slot_count: u64,
    slot_size: u64,
    data_length: u64,
    record_size: u64,
    region_size: u64,
    control_offset: u64,
    groups_offset: u64,
    done_offset: u64,
    slots_offset: u64,
    n_groups: u32,
    policy: u32,
    n_fields: u32,
    creator_pid: u32,
    fields: [FieldEntry; MAX_FIELDS],
}

/// The 64 bytes in front of each slot's data.
#[repr(C)]
struct SlotHeader {
    /// Seqlock word: 2e+1 while event e is being written, 2e+2 once it is complete.
    seq: AtomicU64,
    meta: Metadata,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Geometry {
    slots: usize,
    slot_size: usize,
    n_groups: usize,
    control: usize,
    groups: usize,
    done: usize,
    data: usize,
    total: usize,
}

/// `x` rounded up to a multiple of `to`; None on overflow.
fn round_up(x: usize, to: usize) -> Option<usize> {
    x.checked_next_multiple_of(to)
}

/// Bytes per slot for events of `data_bytes`: the slot header plus the data, rounded up to a
/// cache line; None when that does not fit a usize.
fn slot_size_for(data_bytes: usize) -> Option<usize> {
    data_bytes
        .checked_add(SLOT_HEADER)?
        .checked_next_multiple_of(64)
}

impl Geometry {
    /// The layout of a ring; None when it would not fit the address space. Every step is
    /// checked: attach feeds this numbers read from a file that may be garbage.
    fn new(slots: usize, slot_size: usize, n_groups: usize) -> Option<Geometry> {
        let control = round_up(std::mem::size_of::<Header>(), PAGE)?;
        let groups = round_up(control.checked_add(std::mem::size_of::<Control>())?, PAGE)?;
        let done = round_up(
            groups.checked_add(n_groups.checked_mul(std::mem::size_of::<Group>())?)?,
            PAGE,
        )?;
        let done_bytes = n_groups.checked_mul(slots)?.checked_mul(8)?;
        let data = round_up(done.checked_add(done_bytes)?, PAGE)?;
        let total = data.checked_add(slots.checked_mul(slot_size)?)?;
        // A mapping cannot exceed isize::MAX bytes; slices into it must not either.
        if total > isize::MAX as usize {
            return None;
        }
        Some(Geometry {
            slots,
            slot_size,
            n_groups,
            control,
            groups,
            done,
            data,
            total,
        })
    }
}

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

/// What a reader got.
pub enum Next<'r> {
    /// An event, borrowed in place until dropped.
    Event(SlotRef<'r>),
    /// Nothing within the timeout.
    Idle,
    /// The producer closed the stream and everything was read.
    End,
}

struct Inner {
    shm: ShmFile,
    geo: Geometry,
    name: String,
    dtype: Dtype,
    data_length: usize,
    policy: Policy,
    members: Vec<usize>,
    /// This process created the file (it is in [`CREATED`] while this lives).
    created: bool,
}

/// Ring files this process created and still holds. A file naming this process as its
/// creator that is not listed here was left by an earlier process with the same pid (pids
/// repeat, e.g. in containers) and is stale; one listed here is live.
static CREATED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

fn created_here(path: &Path) -> bool {
    CREATED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .any(|p| p == path)
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.created {
            let path = self.shm.path();
            CREATED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|p| p != path);
        }
    }
}

impl Inner {
    fn base(&self) -> *mut u8 {
        self.shm.as_ptr()
    }

    fn header(&self) -> &Header {
        // SAFETY: the file was validated to be at least `geo.total` ≥ size_of::<Header>() bytes
        // long; the mapping is page aligned; Header is plain data and atomics.
        unsafe { &*(self.base() as *const Header) }
    }

    fn core(&self) -> Core<'_> {
        let g = &self.geo;
        // SAFETY: the geometry was computed from (and validated against) the header and the
        // file length, so each region lies inside the mapping, is page aligned (≥ the 128-byte
        // alignment of Control and Group), and holds zero-initialised or protocol-maintained
        // atomics, for which every bit pattern is valid. The mapping lives as long as `self`.
        unsafe {
            Core {
                ctl: &*(self.base().add(g.control) as *const Control),
                groups: std::slice::from_raw_parts(
                    self.base().add(g.groups) as *const Group,
                    g.n_groups,
                ),
                done: std::slice::from_raw_parts(
                    self.base().add(g.done) as *const AtomicU64,
                    g.n_groups * g.slots,
                ),
                slots: g.slots as u64,
            }
        }
    }

    fn slot(&self, e: u64) -> *mut u8 {
        let s = (e as usize) & (self.geo.slots - 1);
        // SAFETY: s < slots, so the slot lies inside the data region of the mapping.
        unsafe { self.base().add(self.geo.data + s * self.geo.slot_size) }
    }

    fn slot_header(&self, e: u64) -> &SlotHeader {
        // SAFETY: each slot starts 64-byte aligned inside the mapping with a SlotHeader.
        unsafe { &*(self.slot(e) as *const SlotHeader) }
    }

    fn data_bytes(&self) -> usize {
        self.data_length * self.dtype.record_size()
    }
}

/// A ring in shared memory: a handle any number of producers, readers and observers in
/// this process share. Cloning is cheap.
#[derive(Clone)]
pub struct Ring {
    inner: Arc<Inner>,
}

// SAFETY: all access to the shared mapping goes through atomics or through the slot
// ownership the protocol hands out; Inner's other fields are immutable after construction.
unsafe impl Send for Inner {}
// SAFETY: as above.
unsafe impl Sync for Inner {}

/// Whether process `pid` is alive (a zombie counts as dead).
pub fn pid_alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            // Field 3, after the parenthesised command name.
            let state = s
                .rsplit_once(')')
                .and_then(|(_, r)| r.trim().chars().next());
            !matches!(state, Some('Z') | Some('X') | None)
        }
        Err(_) => false,
    }
}

impl Ring {
    /// Creates a ring in the first usable place (see [`crate::shm::places`]), pre-faulted
    /// and locked. A stale file of the same name left by a crashed run is removed with a
    /// warning; one whose creator still runs (this process included, while it holds that
    /// ring) is [`CreateError::InUse`]. The file is removed when the last
    /// handle of this `Ring` in the creating process is dropped.
    pub fn create(places: &[ShmPlace], spec: &RingSpec) -> Result<Ring, CreateError> {
        let bad = |problem: String| CreateError::BadSpec {
            name: spec.name.clone(),
            problem,
        };
        if spec.slot_count < 2 || !spec.slot_count.is_power_of_two() {
            return Err(bad(format!(
                "slot_count {} must be a power of two ≥ 2",
                spec.slot_count
            )));
        }
        if spec.data_length == 0 {
            return Err(bad("data_length must be at least 1".into()));
        }
        if spec.groups.len() > MAX_GROUPS {
            return Err(bad(format!(
                "{} reading workers; at most {MAX_GROUPS} may read one buffer",
                spec.groups.len()
            )));
        }
        if let Some(&m) = spec.groups.iter().find(|&&m| m == 0 || m > MAX_MEMBERS) {
            return Err(bad(format!(
                "a reading worker with {m} processes; 1 to {MAX_MEMBERS} allowed"
            )));
        }
        if spec.name.is_empty() || spec.name.contains('/') {
            return Err(bad(
                "a ring name must be non-empty and contain no '/'".into()
            ));
        }
        let geo = spec
            .data_length
            .checked_mul(spec.dtype.record_size())
            .and_then(slot_size_for)
            .and_then(|slot_size| Geometry::new(spec.slot_count, slot_size, spec.groups.len()))
            .ok_or_else(|| bad("the ring would be larger than memory".into()))?;
        let shm = match ShmFile::create(places, &spec.name, geo.total) {
            Ok(f) => f,
            Err(ShmError::Exists { path }) => {
                Self::remove_stale(&path)?;
                ShmFile::create(places, &spec.name, geo.total)?
            }
            Err(e) => return Err(e.into()),
        };
        let inner = Inner {
            shm,
            geo,
            name: spec.name.clone(),
            dtype: spec.dtype.clone(),
            data_length: spec.data_length,
            policy: spec.policy,
            members: spec.groups.clone(),
            created: true,
        };
        CREATED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(inner.shm.path().to_path_buf());
        // SAFETY: the fresh file is zero-filled and at least geo.total bytes; we are its only
        // user until `ready` is set, so plain writes to the header are not racing anyone.
        unsafe {
            let h = inner.base() as *mut Header;
            (*h).magic = MAGIC;
            (*h).version = LAYOUT_VERSION;
            (*h).schema_hash = spec.dtype.schema_hash();
            (*h).slot_count = geo.slots as u64;
            (*h).slot_size = geo.slot_size as u64;
            (*h).data_length = spec.data_length as u64;
            (*h).record_size = spec.dtype.record_size() as u64;
            (*h).region_size = geo.total as u64;
            (*h).control_offset = geo.control as u64;
            (*h).groups_offset = geo.groups as u64;
            (*h).done_offset = geo.done as u64;
            (*h).slots_offset = geo.data as u64;
            (*h).n_groups = geo.n_groups as u32;
            (*h).policy = spec.policy.code();
            (*h).n_fields = spec.dtype.fields().len() as u32;
            (*h).creator_pid = std::process::id();
            for (entry, f) in (*h).fields.iter_mut().zip(spec.dtype.fields()) {
                entry.name[..f.name.len()].copy_from_slice(f.name.as_bytes());
                entry.code = f.scalar.code();
                entry.offset = f.offset as u32;
            }
        }
        let core = inner.core();
        for (g, &m) in spec.groups.iter().enumerate() {
            let info = &core.groups[g].info.0;
            info.members.store(m as u32, Ordering::SeqCst);
            info.active.store(1, Ordering::SeqCst);
            for mem in &core.groups[g].members {
                mem.0.held.store(core::HELD_NONE, Ordering::SeqCst);
            }
        }
        inner.header().ready.store(READY, Ordering::SeqCst);
        Ok(Ring {
            inner: Arc::new(inner),
        })
    }

    fn remove_stale(path: &Path) -> Result<(), CreateError> {
        let pid = match ShmFile::open(path) {
            Ok(f) if f.len() >= std::mem::size_of::<Header>() => {
                // SAFETY: the mapping is at least a header long; we only read a u32.
                unsafe { (*(f.as_ptr() as *const Header)).creator_pid }
            }
            _ => 0,
        };
        let live = if pid == std::process::id() {
            created_here(path)
        } else {
            pid != 0 && pid_alive(pid)
        };
        if live {
            return Err(CreateError::InUse {
                path: path.to_path_buf(),
                pid,
            });
        }
        tracing::warn!(
            "removed stale ring file {} left by a run that ended without cleaning up (creator pid {pid})",
            path.display()
        );
        std::fs::remove_file(path).map_err(|source| {
            CreateError::Shm(ShmError::Io {
                path: path.to_path_buf(),
                what: "removing a stale ring",
                source,
            })
        })
    }

    /// Attaches to an existing ring by path, validating its header. `expect_dtype` and
    /// `expect_length`, when given, must match the ring's.
    pub fn attach(
        path: &Path,
        expect_dtype: Option<&Dtype>,
        expect_length: Option<usize>,
    ) -> Result<Ring, AttachError> {
        let shm = ShmFile::open(path)?;
        let p = || path.to_path_buf();
        let need = std::mem::size_of::<Header>();
        if shm.len() < need {
            return Err(AttachError::TooShort {
                path: p(),
                len: shm.len(),
                need,
            });
        }
        // SAFETY: the mapping is at least one Header long and page aligned; every field of
        // Header is valid for any bit pattern.
        let h = unsafe { &*(shm.as_ptr() as *const Header) };
        // `ready` first: the creator stores it after every other header field, so only once
        // it is seen are the others complete (and visible to this process). A file still
        // being built is zero-filled or has its magic already: not ready, not "not a ring".
        if h.ready.load(Ordering::SeqCst) != READY {
            if h.magic == MAGIC || h.magic == [0; 8] {
                return Err(AttachError::NotReady { path: p() });
            }
            return Err(AttachError::BadMagic {
                path: p(),
                found: h.magic,
            });
        }
        if h.magic != MAGIC {
            return Err(AttachError::BadMagic {
                path: p(),
                found: h.magic,
            });
        }
        if h.version != LAYOUT_VERSION {
            return Err(AttachError::Version {
                path: p(),
                found: h.version,
                expected: LAYOUT_VERSION,
            });
        }
        let corrupt = |problem: String| AttachError::Corrupt { path: p(), problem };
        let slots = h.slot_count as usize;
        if slots < 2 || !slots.is_power_of_two() {
            return Err(corrupt(format!(
                "slot_count {slots} is not a power of two ≥ 2"
            )));
        }
        if h.n_groups as usize > MAX_GROUPS || h.n_fields as usize > MAX_FIELDS || h.n_fields == 0 {
            return Err(corrupt(format!(
                "{} groups / {} fields out of range",
                h.n_groups, h.n_fields
            )));
        }
        let mut fields = Vec::new();
        for e in &h.fields[..h.n_fields as usize] {
            let len = e.name.iter().position(|&b| b == 0).unwrap_or(e.name.len());
            let name = std::str::from_utf8(&e.name[..len])
                .map_err(|_| corrupt("a field name is not UTF-8".into()))?;
            let scalar = Scalar::from_code(e.code)
                .ok_or_else(|| corrupt(format!("field '{name}' has unknown type {}", e.code)))?;
            fields.push((name.to_string(), scalar));
        }
        let dtype = Dtype::new(fields).map_err(|e| corrupt(e.to_string()))?;
        if dtype.schema_hash() != h.schema_hash || dtype.record_size() as u64 != h.record_size {
            return Err(corrupt("field table does not match its schema hash".into()));
        }
        let data_length = h.data_length as usize;
        let slot_size = data_length
            .checked_mul(dtype.record_size())
            .and_then(slot_size_for)
            .ok_or_else(|| {
                corrupt(format!(
                    "data_length {data_length} × record size {} overflows",
                    dtype.record_size()
                ))
            })?;
        let geo = Geometry::new(slots, slot_size, h.n_groups as usize).ok_or_else(|| {
            corrupt(format!(
                "{slots} slots of {slot_size} bytes for {} groups overflow the address space",
                h.n_groups
            ))
        })?;
        let stored = (
            h.slot_size,
            h.control_offset,
            h.groups_offset,
            h.done_offset,
            h.slots_offset,
            h.region_size,
        );
        let computed = (
            geo.slot_size as u64,
            geo.control as u64,
            geo.groups as u64,
            geo.done as u64,
            geo.data as u64,
            geo.total as u64,
        );
        if stored != computed {
            return Err(corrupt(format!(
                "offsets {stored:?} differ from the layout {computed:?}"
            )));
        }
        if shm.len() < geo.total {
            return Err(corrupt(format!(
                "file is {} bytes, the layout needs {} (truncated?)",
                shm.len(),
                geo.total
            )));
        }
        let policy = Policy::from_code(h.policy)
            .ok_or_else(|| corrupt(format!("unknown policy {}", h.policy)))?;
        if let Some(want) = expect_dtype {
            if *want != dtype {
                return Err(AttachError::Schema {
                    path: p(),
                    found: dtype.to_string(),
                    expected: want.to_string(),
                });
            }
        }
        if let Some(want) = expect_length {
            if want != data_length {
                return Err(AttachError::Length {
                    path: p(),
                    found: data_length,
                    expected: want,
                });
            }
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut inner = Inner {
            shm,
            geo,
            name,
            dtype,
            data_length,
            policy,
            members: Vec::new(),
            created: false,
        };
        let core = inner.core();
        let members: Vec<usize> = core
            .groups
            .iter()
            .map(|g| (g.info.0.members.load(Ordering::SeqCst) as usize).min(MAX_MEMBERS))
            .collect();
        inner.members = members;
        Ok(Ring {
            inner: Arc::new(inner),
        })
    }

    /// Where event `e`'s slot keeps its records (`event_bytes()` long) and its metadata
    /// record (24 bytes: counter, timestamp, deadtime) in this process's mapping. The
    /// addresses stay valid while any clone of this `Ring` lives; who may read or write them
    /// is the ring protocol's business (a claimed event, a kept event), not this call's.
    pub fn slot_places(&self, e: u64) -> (*mut u8, *mut u8) {
        let base = self.inner.slot(e);
        // SAFETY: the slot lies inside the mapping; SLOT_HEADER and the metadata offset are
        // inside the slot (see SlotHeader).
        unsafe {
            (
                base.add(SLOT_HEADER),
                base.add(std::mem::offset_of!(SlotHeader, meta)),
            )
        }
    }

    /// The ring's name (its file name).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        self.inner.shm.path()
    }

    /// Record type.
    pub fn dtype(&self) -> &Dtype {
        &self.inner.dtype
    }

    /// Records per event.
    pub fn data_length(&self) -> usize {
        self.inner.data_length
    }

    /// Bytes of data per event.
    pub fn event_bytes(&self) -> usize {
        self.inner.data_bytes()
    }

    /// Slots.
    pub fn slot_count(&self) -> usize {
        self.inner.geo.slots
    }

    /// Full-ring policy.
    pub fn policy(&self) -> Policy {
        self.inner.policy
    }

    /// Members of each consumer group.
    pub fn groups(&self) -> &[usize] {
        &self.inner.members
    }

    /// The pages behind the ring.
    pub fn backing(&self) -> Backing {
        self.inner.shm.backing()
    }

    /// Whether the mapping is locked in memory.
    pub fn locked(&self) -> bool {
        self.inner.shm.locked()
    }

    /// Size of the mapping in bytes.
    pub fn mapped_bytes(&self) -> usize {
        self.inner.shm.len()
    }

    /// Takes the producer role for this process. Only one live producer per ring; a dead
    /// one's role may be taken over (its unpublished slot is simply never published).
    pub fn producer(&self) -> Result<Producer, RoleError> {
        let core = self.inner.core();
        let me = std::process::id();
        let slot = &core.ctl.producer_pid.0;
        // Check and take in one step, so two processes can never both become the producer.
        loop {
            let cur = slot.load(Ordering::SeqCst);
            if cur != 0 && cur != me && pid_alive(cur) {
                return Err(RoleError::ProducerTaken {
                    ring: self.inner.name.clone(),
                    pid: cur,
                });
            }
            if slot
                .compare_exchange(cur, me, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                break;
            }
        }
        let w = core.ctl.write.0.load(Ordering::SeqCst);
        Ok(Producer {
            ring: self.clone(),
            w,
            cached: core.min_release(w),
            pending_ns: 0,
        })
    }

    /// Takes the role of member `member` of consumer group `group` for this process.
    pub fn reader(&self, group: usize, member: usize) -> Result<Reader, RoleError> {
        if group >= self.inner.members.len() || member >= self.inner.members[group] {
            return Err(RoleError::NoSuchMember {
                ring: self.inner.name.clone(),
                group,
                member,
            });
        }
        let core = self.inner.core();
        let slot = &core.groups[group].members[member].0.pid;
        let me = std::process::id();
        let cur = slot.load(Ordering::SeqCst);
        if cur != 0 && cur != me && pid_alive(cur) {
            return Err(RoleError::MemberTaken {
                ring: self.inner.name.clone(),
                group,
                member,
                pid: cur,
            });
        }
        if cur != 0 && cur != me {
            // The previous holder died: release what it held before taking its place.
            while !core
                .reclaim(group, member, cur, &|i| {
                    i != member && self.member_alive(group, i)
                })
                .1
            {
                std::thread::yield_now();
            }
        }
        // Take the role only if nobody else took it meanwhile (another process replacing the
        // same dead member): one of two racing processes wins, the other is told who did.
        if let Err(now) = slot.compare_exchange(cur, me, Ordering::SeqCst, Ordering::SeqCst) {
            return Err(RoleError::MemberTaken {
                ring: self.inner.name.clone(),
                group,
                member,
                pid: now,
            });
        }
        let batch = (self.inner.geo.slots as u64 / 4).clamp(1, 64);
        Ok(Reader {
            ring: self.clone(),
            group,
            member,
            batch,
            next: 0,
            end: 0,
        })
    }

    /// An observer: copies of the latest events, never holding the producer back.
    pub fn observer(&self) -> RingObserver {
        RingObserver {
            ring: self.clone(),
            last: 0,
        }
    }

    fn member_alive(&self, g: usize, m: usize) -> bool {
        let pid = self.inner.core().groups[g].members[m]
            .0
            .pid
            .load(Ordering::SeqCst);
        pid_alive(pid)
    }

    /// Supervisor: finds members whose process is gone and releases the events they held,
    /// so the producer and the other members go on. Returns the events released this call.
    pub fn reclaim_dead(&self) -> u64 {
        let core = self.inner.core();
        let mut total = 0;
        for (g, &n) in self.inner.members.iter().enumerate() {
            for m in 0..n {
                let pid = core.groups[g].members[m].0.pid.load(Ordering::SeqCst);
                if pid == 0 || pid_alive(pid) {
                    continue;
                }
                let (released, settled) =
                    core.reclaim(g, m, pid, &|i| i != m && self.member_alive(g, i));
                total += released;
                if settled {
                    let _ = core.groups[g].members[m].0.pid.compare_exchange(
                        pid,
                        0,
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    );
                }
            }
        }
        total
    }

    /// Supervisor: the producer stops waiting for consumer group `group` (its worker is gone
    /// and will not come back).
    pub fn detach_group(&self, group: usize) {
        if group < self.inner.members.len() {
            self.inner.core().detach(group);
        }
    }

    /// Supervisor: ends the stream on the producer's behalf (its process died).
    pub fn close(&self) {
        self.inner.core().close();
    }

    /// Pid of the producer process, if one is attached.
    pub fn producer_pid(&self) -> Option<u32> {
        let p = self.inner.core().ctl.producer_pid.0.load(Ordering::SeqCst);
        (p != 0).then_some(p)
    }

    /// A snapshot of the ring's counters.
    pub fn stats(&self) -> RingStats {
        let core = self.inner.core();
        let published = core.ctl.write.0.load(Ordering::SeqCst);
        let groups: Vec<GroupStats> = core
            .groups
            .iter()
            .map(|g| GroupStats {
                released: g.release.0.load(Ordering::SeqCst),
                claimed: g.claim.0.load(Ordering::SeqCst),
                abandoned: g.info.0.abandoned.load(Ordering::SeqCst),
                active: g.info.0.active.load(Ordering::SeqCst) != 0,
            })
            .collect();
        let oldest = core.min_release(published);
        RingStats {
            published,
            lost: core.ctl.stats.0.lost.load(Ordering::SeqCst),
            blocked_ns: core.ctl.stats.0.blocked_ns.load(Ordering::SeqCst),
            filled: published - oldest.min(published),
            slot_count: self.inner.geo.slots as u64,
            closed: core.ctl.eos.0.load(Ordering::SeqCst) != 0,
            groups,
        }
    }

    /// Keeps the file when the last handle in this process is dropped (the creator hands it
    /// to the engine, which removes it at the end of the run).
    pub fn keep_file(&mut self) -> bool {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => {
                inner.shm.disown();
                true
            }
            None => false,
        }
    }
}

/// Counters of one consumer group.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct GroupStats {
    /// Events fully released.
    pub released: u64,
    /// Events claimed by members.
    pub claimed: u64,
    /// Events released unread: by the supervisor for members that died holding them, and
    /// by members that left (dropped their reader) before reading all they had claimed.
    /// Per group, events read + abandoned == events released.
    pub abandoned: u64,
    /// Whether the producer waits for this group.
    pub active: bool,
}

/// A snapshot of a ring's counters.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RingStats {
    /// Events published.
    pub published: u64,
    /// Events dropped because the ring was full (`drop` policy).
    pub lost: u64,
    /// Nanoseconds the producer waited for room (`block` policy): dead time.
    pub blocked_ns: u64,
    /// Slots holding events not yet released by every active group.
    pub filled: u64,
    /// Slots in all.
    pub slot_count: u64,
    /// The stream has ended.
    pub closed: bool,
    /// Per consumer group.
    pub groups: Vec<GroupStats>,
}

/// The producer role: writes events into the ring. One per ring.
pub struct Producer {
    ring: Ring,
    /// Next event number to write; equals the shared write cursor between claims.
    w: u64,
    /// Private copy of the oldest unreleased event over active groups (≤ the true value).
    cached: u64,
    /// Nanoseconds waited for room since the last publish (in claims that timed out, in
    /// `wait_room`, in the current claim): the dead time of the next published event.
    pending_ns: u64,
}

impl Producer {
    /// The ring.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Events published so far.
    pub fn published(&self) -> u64 {
        self.w
    }

    /// True when the next claim would find room at once (no waiting, nothing counted).
    /// An Importer under `drop` asks this first, so that it can read a device's event into
    /// scratch space and count it lost only when the device really delivered one.
    pub fn has_room(&mut self) -> bool {
        self.ring.inner.core().has_room(self.w, &mut self.cached)
    }

    /// Waits up to `timeout` for room for the next event, booking the wait as dead time.
    /// Returns whether there is room. Under `drop` it does not wait.
    pub fn wait_room(&mut self, timeout: Duration) -> bool {
        let inner = &*self.ring.inner;
        let core = inner.core();
        if core.has_room(self.w, &mut self.cached) {
            return true;
        }
        if inner.policy == Policy::Drop {
            return false;
        }
        let t0 = sync::now_ns();
        let ok = core.wait_room(self.w, &mut self.cached, nanos(timeout), sync::now_ns);
        let waited = sync::now_ns() - t0;
        self.pending_ns += waited;
        core.ctl
            .stats
            .0
            .blocked_ns
            .fetch_add(waited, Ordering::Relaxed);
        ok
    }

    /// Counts `n` events as lost (taken from the source but not published).
    pub fn count_lost(&mut self, n: u64) {
        self.ring
            .inner
            .core()
            .ctl
            .stats
            .0
            .lost
            .fetch_add(n, Ordering::Relaxed);
    }

    /// Claims the slot for the next event. `block` policy: waits up to `timeout` for room
    /// (`Err(Timeout)` after that; the time waited is added to the ring's dead time at once
    /// and to the [`SlotMut::blocked_ns`] of the next event published, also when this claim
    /// timed out). `drop` policy: never waits; a full ring counts the event as lost and
    /// returns `Err(Full)`.
    pub fn claim(&mut self, timeout: Duration) -> Result<SlotMut<'_>, ClaimError> {
        let inner = &*self.ring.inner;
        let core = inner.core();
        if !core.has_room(self.w, &mut self.cached) {
            match inner.policy {
                Policy::Drop => {
                    core.ctl.stats.0.lost.fetch_add(1, Ordering::Relaxed);
                    return Err(ClaimError::Full);
                }
                Policy::Block => {
                    let t0 = sync::now_ns();
                    let ok = core.wait_room(self.w, &mut self.cached, nanos(timeout), sync::now_ns);
                    let blocked = sync::now_ns() - t0;
                    self.pending_ns += blocked;
                    core.ctl
                        .stats
                        .0
                        .blocked_ns
                        .fetch_add(blocked, Ordering::Relaxed);
                    if !ok {
                        return Err(ClaimError::Timeout);
                    }
                }
            }
        }
        let e = self.w;
        let sh = inner.slot_header(e);
        let prev_seq = sh.seq.load(Ordering::Relaxed);
        sh.seq.store(2 * e + 1, Ordering::Relaxed);
        sync::fence(Ordering::Release);
        let blocked_ns = self.pending_ns;
        Ok(SlotMut {
            producer: self,
            e,
            prev_seq,
            blocked_ns,
        })
    }

    /// Ends the stream: readers drain what was published, then see [`Next::End`].
    pub fn close(self) {
        self.ring.inner.core().close();
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        let core = self.ring.inner.core();
        let _ = core.ctl.producer_pid.0.compare_exchange(
            std::process::id(),
            0,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }
}

/// A slot being written. [`SlotMut::publish`] makes it visible; dropping it unpublished
/// gives the slot back untouched for the next claim.
pub struct SlotMut<'p> {
    producer: &'p mut Producer,
    e: u64,
    prev_seq: u64,
    blocked_ns: u64,
}

impl SlotMut<'_> {
    /// The event's records (`data_length × record_size` bytes), to fill in place.
    pub fn data_mut(&mut self) -> &mut [u8] {
        let inner = &*self.producer.ring.inner;
        // SAFETY: the protocol gives this slot to the producer alone until publish (every
        // active group released its previous event), and observers only read it; the data
        // region of a slot is SLOT_HEADER.. SLOT_HEADER + data_bytes inside the slot.
        unsafe {
            std::slice::from_raw_parts_mut(inner.slot(self.e).add(SLOT_HEADER), inner.data_bytes())
        }
    }

    /// The event's metadata record.
    pub fn meta_mut(&mut self) -> &mut Metadata {
        let inner = &*self.producer.ring.inner;
        // SAFETY: as in data_mut; the metadata sits 8-aligned at offset 8 of the slot.
        unsafe { &mut (*(inner.slot(self.e) as *mut SlotHeader)).meta }
    }

    /// Both at once, for code that fills data and metadata together.
    pub fn parts(&mut self) -> (&mut [u8], &mut Metadata) {
        let inner = &*self.producer.ring.inner;
        let n = inner.data_bytes();
        let base = inner.slot(self.e);
        // SAFETY: as in data_mut and meta_mut; the two ranges do not overlap.
        unsafe {
            (
                std::slice::from_raw_parts_mut(base.add(SLOT_HEADER), n),
                &mut (*(base as *mut SlotHeader)).meta,
            )
        }
    }

    /// Nanoseconds the producer waited for room since it published its previous event: in
    /// this claim, in claims that timed out and in [`Producer::wait_room`] (0 when there was
    /// room at once). This is the event's dead time; over all published events these add up
    /// to the ring's `blocked_ns`.
    pub fn blocked_ns(&self) -> u64 {
        self.blocked_ns
    }

    /// The event's number in this ring (0-based).
    pub fn index(&self) -> u64 {
        self.e
    }

    /// Makes the event visible to every consumer group and observer.
    pub fn publish(self) {
        let inner = &*self.producer.ring.inner;
        inner
            .slot_header(self.e)
            .seq
            .store(2 * self.e + 2, Ordering::Release);
        self.producer.w = self.e + 1;
        self.producer.pending_ns = 0;
        inner.core().publish(self.e + 1);
        std::mem::forget(self);
    }
}

impl Drop for SlotMut<'_> {
    fn drop(&mut self) {
        // Not published: restore the sequence word so observers see the slot as it was.
        let inner = &*self.producer.ring.inner;
        inner
            .slot_header(self.e)
            .seq
            .store(self.prev_seq, Ordering::Release);
    }
}

/// A member of a consumer group: reads its share of the events.
pub struct Reader {
    ring: Ring,
    group: usize,
    member: usize,
    batch: u64,
    /// Next event of the claimed range to hand out.
    next: u64,
    /// End of the claimed range.
    end: u64,
}

impl Reader {
    /// The ring.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Sets how many events a member claims at once (1 ..= 65535). Larger batches cost
    /// fewer shared-cursor updates; with several members, smaller ones share work finer.
    pub fn set_batch(&mut self, batch: u64) {
        self.batch = batch.clamp(1, core::MAX_BATCH);
    }

    /// The next event of this member's share, waiting at most `timeout`.
    pub fn next(&mut self, timeout: Duration) -> Next<'_> {
        if self.next < self.end {
            return self.hand_out();
        }
        let core = self.ring.inner.core();
        let deadline = sync::now_ns().saturating_add(nanos(timeout));
        loop {
            match core.claim(self.group, self.member, self.batch) {
                Claim::Got(s, e) => {
                    self.next = s;
                    self.end = e;
                    return self.hand_out();
                }
                Claim::End => return Next::End,
                Claim::Empty => {
                    let now = sync::now_ns();
                    if now >= deadline {
                        return Next::Idle;
                    }
                    core.wait_data(self.group, deadline - now);
                }
            }
        }
    }

    /// The next event if one is published, without waiting.
    pub fn try_next(&mut self) -> Next<'_> {
        self.next(Duration::ZERO)
    }

    /// True when this member has claimed events it has not yet handed out (it must read
    /// them before the stream can end for it).
    pub fn has_claimed(&self) -> bool {
        self.next < self.end
    }

    /// The futex word and its current value a merged waiter may sleep on (see
    /// [`wait_any`]).
    pub fn wait_token(&self) -> WaitToken<'_> {
        let core = self.ring.inner.core();
        let dw = &core.ctl.data_wait.0;
        WaitToken {
            futex: &dw.futex,
            waiting: &dw.waiting,
            seen: dw.futex.load(Ordering::SeqCst),
        }
    }

    /// True when a claim would find something (an event or the end).
    pub fn ready(&self) -> bool {
        if self.next < self.end {
            return true;
        }
        let core = self.ring.inner.core();
        core.groups[self.group].claim.0.load(Ordering::SeqCst)
            < core.ctl.write.0.load(Ordering::SeqCst)
            || core.ctl.eos.0.load(Ordering::SeqCst) != 0
    }

    fn hand_out(&mut self) -> Next<'_> {
        let e = self.next;
        self.next += 1;
        Next::Event(SlotRef { reader: self, e })
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let core = self.ring.inner.core();
        // Events claimed but never handed out are released, so the group does not stall.
        // Nobody in the group will read them now: count them as abandoned.
        let unread = self.end.saturating_sub(self.next);
        while self.next < self.end {
            core.release(self.group, self.member, self.next);
            self.next += 1;
        }
        if unread > 0 {
            core.groups[self.group]
                .info
                .0
                .abandoned
                .fetch_add(unread, Ordering::SeqCst);
        }
        let mem = &core.groups[self.group].members[self.member].0;
        let _ = mem
            .pid
            .compare_exchange(std::process::id(), 0, Ordering::SeqCst, Ordering::SeqCst);
    }
}

/// A futex a reader may sleep on, with the value seen before checking for data.
#[derive(Clone, Copy)]
pub struct WaitToken<'a> {
    futex: &'a AtomicU32,
    waiting: &'a AtomicU32,
    seen: u32,
}

/// Sleeps until any of the readers whose tokens are given may have data, at most `timeout`.
/// Take the tokens, check [`Reader::ready`] on each, then call this: no wake-up is lost.
pub fn wait_any(tokens: &[WaitToken<'_>], timeout: Duration) {
    for t in tokens {
        t.waiting.fetch_add(1, Ordering::SeqCst);
    }
    const MAX: usize = 64;
    let n = tokens.len().min(MAX);
    let mut words: [(Option<&AtomicU32>, u32); MAX] = [(None, 0); MAX];
    for (w, t) in words.iter_mut().zip(tokens) {
        *w = (Some(t.futex), t.seen);
    }
    #[cfg(not(loom))]
    sync::futex_wait_any(&words[..n], nanos(timeout));
    #[cfg(loom)]
    let _ = (&words, n, timeout);
    for t in tokens {
        t.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An event borrowed in place from the ring. Released when dropped.
pub struct SlotRef<'r> {
    reader: &'r mut Reader,
    e: u64,
}

impl SlotRef<'_> {
    /// The event's records.
    pub fn data(&self) -> &[u8] {
        let inner = &*self.reader.ring.inner;
        // SAFETY: this member claimed event e and has not released it, so the producer will
        // not write the slot until it is released; the data range lies inside the slot.
        unsafe {
            std::slice::from_raw_parts(inner.slot(self.e).add(SLOT_HEADER), inner.data_bytes())
        }
    }

    /// The event's metadata.
    pub fn meta(&self) -> Metadata {
        self.reader.ring.inner.slot_header(self.e).meta
    }

    /// The event's number in this ring (0-based, publish order).
    pub fn index(&self) -> u64 {
        self.e
    }
}

impl SlotRef<'_> {
    /// Keeps the event past this borrow, for a caller that reads it across calls (the
    /// Python bridge hands a view of it to user code and takes it back on the next call).
    /// It stays claimed by this member until [`Reader::release_kept`] gives it back.
    pub fn keep(self) -> Kept {
        let e = self.e;
        std::mem::forget(self);
        Kept { e }
    }
}

/// An event kept past its [`SlotRef`] borrow ([`SlotRef::keep`]). Not `Clone`: it goes back
/// exactly once, through [`Reader::release_kept`] of the reader that handed it out.
#[must_use = "a kept event must go back through Reader::release_kept, or its group stalls"]
#[derive(Debug)]
pub struct Kept {
    e: u64,
}

impl Kept {
    /// The event's number in its ring.
    pub fn index(&self) -> u64 {
        self.e
    }
}

impl Reader {
    /// The records of an event this reader handed out and `k` keeps.
    pub fn kept_data(&self, k: &Kept) -> &[u8] {
        let inner = &*self.ring.inner;
        // SAFETY: as in SlotRef::data: this member claimed event k.e and has not released
        // it (a Kept exists only between keep and release_kept).
        unsafe { std::slice::from_raw_parts(inner.slot(k.e).add(SLOT_HEADER), inner.data_bytes()) }
    }

    /// The metadata of the event `k` keeps.
    pub fn kept_meta(&self, k: &Kept) -> Metadata {
        self.ring.inner.slot_header(k.e).meta
    }

    /// Gives a kept event back (as dropping its [`SlotRef`] would have).
    pub fn release_kept(&mut self, k: Kept) {
        self.ring.inner.core().release(self.group, self.member, k.e);
    }
}

impl Drop for SlotRef<'_> {
    fn drop(&mut self) {
        let r = &*self.reader;
        r.ring.inner.core().release(r.group, r.member, self.e);
    }
}

/// Copies of the latest events, taken without holding anything.
pub struct RingObserver {
    ring: Ring,
    /// Events published when the last copy was taken.
    last: u64,
}

impl RingObserver {
    /// The ring.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Copies the latest published event into `data` (exactly the ring's event size) and
    /// `meta`, if one was published since the last call: `Ok(Some(index))`, or `Ok(None)`
    /// when nothing new was published. A copy torn by the producer overwriting the slot is
    /// detected and retried; never returned. A `data` of another size is an error (not
    /// "nothing new"), so a mistake cannot pass for an idle ring.
    pub fn latest(
        &mut self,
        data: &mut [u8],
        meta: &mut Metadata,
    ) -> Result<Option<u64>, WrongSize> {
        let inner = &*self.ring.inner;
        let n = inner.data_bytes();
        if data.len() != n {
            return Err(WrongSize {
                got: data.len(),
                want: n,
            });
        }
        let core = inner.core();
        loop {
            let w = core.ctl.write.0.load(Ordering::SeqCst);
            if w == 0 || w == self.last {
                return Ok(None);
            }
            let e = w - 1;
            let sh = inner.slot_header(e);
            let s1 = sh.seq.load(Ordering::Acquire);
            if s1 != 2 * e + 2 {
                // Already being overwritten by a later lap: look again at the newest.
                sync::spin();
                continue;
            }
            // SAFETY: the slot lies inside the mapping; the producer may be writing it
            // concurrently, which the sequence check below detects. Copying racy bytes is
            // done with volatile-free memcpy over shared memory the compiler cannot reason
            // about; the result is discarded unless the sequence word is unchanged.
            unsafe {
                std::ptr::copy_nonoverlapping(inner.slot(e).add(SLOT_HEADER), data.as_mut_ptr(), n);
                std::ptr::copy_nonoverlapping(
                    &sh.meta as *const Metadata,
                    meta as *mut Metadata,
                    1,
                );
            }
            sync::fence(Ordering::Acquire);
            if sh.seq.load(Ordering::Relaxed) == s1 {
                self.last = w;
                return Ok(Some(e));
            }
        }
    }
}

/// [`RingObserver::latest`] was given a buffer that is not one event long.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the observer's copy buffer holds {got} bytes; an event of this ring is {want} bytes")]
pub struct WrongSize {
    /// Bytes given.
    pub got: usize,
    /// Bytes of one event.
    pub want: usize,
}
