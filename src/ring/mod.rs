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
//!
//! The module by job:
//! - `layout`: what the shared memory looks like (header, field table, geometry), [`RingSpec`],
//!   [`ring_bytes`] and [`Policy`];
//! - `attach`: [`Ring`], creating and attaching (validating the header), the supervisor's
//!   calls and the counters;
//! - `producer`: [`Producer`] and the slot it writes, [`SlotMut`];
//! - `reader`: [`Reader`], the slot it borrows ([`SlotRef`]) and merged waiting ([`wait_any`]);
//! - `observer`: [`RingObserver`];
//! - `error`: one error enum per operation;
//! - `core`: the cursor protocol on the shared control block, with its memory orderings;
//!   `sync`: atomics and the futex (loom's under `--cfg daq_loom`).

#![warn(missing_docs)]

mod attach;
mod core;
mod error;
mod layout;
mod observer;
mod producer;
mod reader;
pub(crate) mod sync;

#[cfg(all(test, daq_loom))]
mod loom_tests;

pub use attach::{GroupStats, Ring, RingStats};
pub use core::{MAX_GROUPS, MAX_MEMBERS};
pub use error::{AttachError, ClaimError, CreateError, RoleError};
pub use layout::{ring_bytes, slots_for, Policy, RingSpec, LAYOUT_VERSION, SLOT_HEADER};
pub use observer::{RingObserver, WrongSize};
pub use producer::{Producer, SlotMut, Slots};
pub use reader::OWN_CORE_SPIN_MAX;
pub use reader::{wait_any, Kept, Next, Reader, SlotRef, WaitToken};

use std::time::Duration;

/// A timeout in nanoseconds, saturating: `Duration::MAX` (or anything beyond ~584 years)
/// means "for ever", never a wrapped-around short wait.
fn nanos(timeout: Duration) -> u64 {
    u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX)
}
