//! What a ring looks like in shared memory: the header every ring file starts with (magic,
//! layout version, schema hash, geometry, field table), the slot header, and the geometry
//! computed from a [`RingSpec`]. Every size computation is checked: attach feeds these
//! functions numbers read from a file that may be garbage, and they must answer `None`,
//! never overflow.

use super::core::{Control, Group};
use super::sync::{AtomicU32, AtomicU64};
use crate::dtype::{Dtype, Metadata, MAX_DIMS, MAX_FIELDS, MAX_FIELD_NAME};

pub(super) const MAGIC: [u8; 8] = *b"DAQRING\0";
/// Layout version written into every ring header; bumped on any change to the layout.
pub const LAYOUT_VERSION: u32 = 2;
pub(super) const READY: u32 = 0x5245_4459; // "READ"
const PAGE: usize = 4096;
/// Bytes before the data in every slot: sequence word and the metadata record.
pub const SLOT_HEADER: usize = 64;

/// What a full ring does to its producer (`block` or `drop` in a setup and in plan.json).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Lossless: the producer waits for room; the wait is booked as dead time.
    #[default]
    Block,
    /// The producer never waits; a refused event is counted as lost.
    Drop,
}

impl Policy {
    pub(super) fn code(self) -> u32 {
        match self {
            Policy::Block => 0,
            Policy::Drop => 1,
        }
    }
    pub(super) fn from_code(c: u32) -> Option<Policy> {
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
    /// Events in flight at most, ≥ 1 (any count, as a mimoCoRB2 setup gives it): the
    /// producer finds the ring full at this many unreleased events. Inside, the ring lays out
    /// [`slots_for`]`(slot_count)` slots, a power of two.
    pub slot_count: usize,
    /// Full-ring policy.
    pub policy: Policy,
    /// Members (processes) of each consumer group, in group order; at most [`MAX_GROUPS`](super::MAX_GROUPS)
    /// groups of at most [`MAX_MEMBERS`](super::MAX_MEMBERS) each. May be empty (nobody reads).
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
        .and_then(|slot_size| Geometry::new(slots_for(slot_count)?, slot_size, groups))
        .map(|g| g.total)
}

/// Slots a ring lays out to hold `capacity` events in flight: the next power of two, at
/// least 2 (event `e` lives in slot `e & (slots - 1)`); None on overflow.
pub fn slots_for(capacity: usize) -> Option<usize> {
    capacity.max(2).checked_next_power_of_two()
}

impl RingSpec {
    /// Bytes per slot: the slot header plus the data, rounded up to a cache line
    /// (`usize::MAX` when that overflows; [`Ring::create`](super::Ring::create) refuses such a spec).
    pub fn slot_size(&self) -> usize {
        self.data_length
            .checked_mul(self.dtype.record_size())
            .and_then(slot_size_for)
            .unwrap_or(usize::MAX)
    }
}

/// One field of the record type, as stored in the header.
#[repr(C)]
pub(super) struct FieldEntry {
    /// UTF-8 name, NUL-padded (at most MAX_FIELD_NAME bytes, so at least one NUL).
    pub(super) name: [u8; MAX_FIELD_NAME + 1],
    /// `Base::code` of the field's element type (1 … 10 the numbers, as in every version).
    pub(super) code: u8,
    /// 1 for a big-endian field, 0 otherwise (0 in headers written before byte orders).
    pub(super) order: u8,
    /// Subarray dimensions, 0 ..= MAX_DIMS (0: a plain field, and in older headers).
    pub(super) ndim: u8,
    _pad: u8,
    /// Byte offset of the field inside a record.
    pub(super) offset: u32,
}

/// What a field's type needs beyond [`FieldEntry`]: the string length and the subarray
/// dimensions. All zero for a plain number, which is what headers written before these types
/// existed hold (the bytes were zero-filled), so they keep their meaning.
#[repr(C)]
pub(super) struct FieldExt {
    /// Characters of `U<n>` / bytes of `S<n>`; 0 for every other type.
    pub(super) len: u32,
    /// The first `ndim` are the subarray's dimensions, each ≥ 1; the rest 0.
    pub(super) dims: [u32; MAX_DIMS],
}

/// The first bytes of every ring file.
///
/// Written once by the creator with plain stores before `ready`, never changed after.
/// [`Ring::attach`](super::Ring::attach) trusts nothing here before it has seen `ready` and
/// checked every field against the others and against the file length.
#[repr(C)]
pub(super) struct Header {
    /// MAGIC.
    pub(super) magic: [u8; 8],
    /// LAYOUT_VERSION of the program that created the ring.
    pub(super) version: u32,
    /// READY once the creator finished initialising everything else.
    pub(super) ready: AtomicU32,
    /// `Dtype::schema_hash` of the record type described by `fields`.
    pub(super) schema_hash: u64,
    /// Slots laid out, a power of two ≥ 2 and ≥ `capacity`.
    pub(super) slot_count: u64,
    /// Bytes per slot: slot_size_for(data_length × record_size).
    pub(super) slot_size: u64,
    /// Records per event, ≥ 1.
    pub(super) data_length: u64,
    /// Bytes per record.
    pub(super) record_size: u64,
    /// Bytes of the whole ring (Geometry::total); the file is at least this long.
    pub(super) region_size: u64,
    /// Offset of the Control block (Geometry::control), and so on for the regions below:
    /// each as Geometry::new computes it from slot_count, slot_size and n_groups.
    pub(super) control_offset: u64,
    /// Offset of the Group array.
    pub(super) groups_offset: u64,
    /// Offset of the `done` words (n_groups × slot_count).
    pub(super) done_offset: u64,
    /// Offset of the first slot.
    pub(super) slots_offset: u64,
    /// Consumer groups, ≤ MAX_GROUPS.
    pub(super) n_groups: u32,
    /// `Policy::code`.
    pub(super) policy: u32,
    /// Fields of the record type, 1 ..= MAX_FIELDS.
    pub(super) n_fields: u32,
    /// Pid of the creating process (to tell a live ring from a stale file).
    pub(super) creator_pid: u32,
    /// The record type; entries past n_fields are zero.
    pub(super) fields: [FieldEntry; MAX_FIELDS],
    /// Events in flight at most (the spec's slot_count), 1 ..= slot_count.
    pub(super) capacity: u64,
    /// Per field of `fields`, its string length and subarray shape; entries past n_fields
    /// are zero. Added after `capacity` inside the header's first page, so no offset moved.
    pub(super) field_ext: [FieldExt; MAX_FIELDS],
}

// The header must stay within its page: the regions after it start at PAGE in every ring
// file, older ones included.
const _: () = assert!(std::mem::size_of::<Header>() <= PAGE);

/// The 64 bytes in front of each slot's data.
#[repr(C)]
pub(super) struct SlotHeader {
    /// Seqlock word: 2e+1 while event e is being written, 2e+2 once it is complete.
    pub(super) seq: AtomicU64,
    /// The event's metadata record, written by the producer between claim and publish.
    pub(super) meta: Metadata,
}

/// Where everything lies in a ring's mapping. Built only by [`Geometry::new`], so every
/// region is page aligned, follows the one before it, and `total` ≤ isize::MAX.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Geometry {
    /// Slots, a power of two.
    pub(super) slots: usize,
    /// Bytes per slot, a multiple of 64.
    pub(super) slot_size: usize,
    /// Consumer groups.
    pub(super) n_groups: usize,
    /// Offset of the Control block (after the header).
    pub(super) control: usize,
    /// Offset of the `n_groups` Group records.
    pub(super) groups: usize,
    /// Offset of the `n_groups × slots` done words.
    pub(super) done: usize,
    /// Offset of slot 0.
    pub(super) data: usize,
    /// Bytes of the whole ring: `data + slots × slot_size`.
    pub(super) total: usize,
}

/// `x` rounded up to a multiple of `to`; None on overflow.
fn round_up(x: usize, to: usize) -> Option<usize> {
    x.checked_next_multiple_of(to)
}

/// Bytes per slot for events of `data_bytes`: the slot header plus the data, rounded up to a
/// cache line; None when that does not fit a usize.
pub(super) fn slot_size_for(data_bytes: usize) -> Option<usize> {
    data_bytes
        .checked_add(SLOT_HEADER)?
        .checked_next_multiple_of(64)
}

impl Geometry {
    /// The layout of a ring; None when it would not fit the address space. Every step is
    /// checked: attach feeds this numbers read from a file that may be garbage.
    pub(super) fn new(slots: usize, slot_size: usize, n_groups: usize) -> Option<Geometry> {
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
