//! The producer role ([`Producer`]) and the slot it writes ([`SlotMut`]).
//!
//! Must never: write a slot some active group has not released, or make an event visible
//! before its data and metadata are complete.

use super::attach::Ring;
use super::error::{ClaimError, RoleError};
use super::layout::{Policy, SlotHeader, SLOT_HEADER};
use super::sync::Ordering;
use super::{nanos, sync};
use crate::dtype::Metadata;
use crate::shm::pid_alive;
use std::time::Duration;

impl Ring {
    /// Takes the producer role for this process. Only one live producer per ring; a dead
    /// one's role may be taken over (its unpublished slot is simply never published).
    ///
    /// ```
    /// # use daq_engine::dtype::Dtype;
    /// # use daq_engine::ring::{Policy, Ring, RingSpec};
    /// # use daq_engine::shm::{places, HugePages};
    /// # let spec = RingSpec {
    /// #     name: format!("doc-producer-{}", std::process::id()),
    /// #     dtype: Dtype::parse([("ch0", "f4")]).unwrap(),
    /// #     data_length: 16,
    /// #     slot_count: 8,
    /// #     policy: Policy::Block,
    /// #     groups: vec![1],
    /// # };
    /// # let ring = Ring::create(&places(HugePages::Off, None), &spec).unwrap();
    /// let producer = ring.producer().unwrap();
    /// assert_eq!(producer.published(), 0);
    /// // This process holds the role; only a dead producer's role can be taken over.
    /// assert_eq!(ring.producer_pid(), Some(std::process::id()));
    /// drop(producer);
    /// assert_eq!(ring.producer_pid(), None);
    /// ```
    pub fn producer(&self) -> Result<Producer, RoleError> {
        let core = self.inner.core();
        let me = std::process::id();
        let slot = &core.ctl.producer_pid;
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
        let w = core.ctl.write.load(Ordering::SeqCst);
        Ok(Producer {
            ring: self.clone(),
            w,
            cached: core.min_release(w),
            pending_ns: 0,
        })
    }
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
    ///
    /// ```
    /// # use daq_engine::dtype::Dtype;
    /// # use daq_engine::ring::{Policy, Ring, RingSpec};
    /// # use daq_engine::shm::{places, HugePages};
    /// # let spec = RingSpec {
    /// #     name: format!("doc-wait-room-{}", std::process::id()),
    /// #     dtype: Dtype::parse([("ch0", "f4")]).unwrap(),
    /// #     data_length: 16,
    /// #     slot_count: 2,
    /// #     policy: Policy::Block,
    /// #     groups: vec![1],
    /// # };
    /// # let ring = Ring::create(&places(HugePages::Off, None), &spec).unwrap();
    /// use std::time::Duration;
    ///
    /// let mut producer = ring.producer().unwrap();
    /// let _reader = ring.reader(0, 0).unwrap();
    /// for _ in 0..2 {
    ///     producer.claim(Duration::ZERO).unwrap().publish();
    /// }
    /// // Two slots, both unread: no room, and the wait is dead time.
    /// assert!(!producer.wait_room(Duration::from_millis(1)));
    /// assert!(ring.stats().blocked_ns >= 1_000_000);
    /// ```
    pub fn wait_room(&mut self, timeout: Duration) -> bool {
        let inner = &*self.ring.inner;
        let core = inner.core();
        if core.has_room(self.w, &mut self.cached) {
            return true;
        }
        if inner.policy == Policy::Drop {
            return false;
        }
        self.wait_booked(timeout)
    }

    /// Waits up to `timeout` for room (`block` policy, the ring looked full) and books the
    /// time waited as dead time twice over: at once in the ring's `blocked_ns`, and in
    /// `pending_ns` for the next event published. Returns whether there is room.
    fn wait_booked(&mut self, timeout: Duration) -> bool {
        let core = self.ring.inner.core();
        let t0 = sync::now_ns();
        let ok = core.wait_room(self.w, &mut self.cached, nanos(timeout), sync::now_ns);
        let waited = sync::now_ns() - t0;
        self.pending_ns += waited;
        core.ctl
            .stats
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
            .lost
            .fetch_add(n, Ordering::Relaxed);
    }

    /// Claims the slot for the next event. `block` policy: waits up to `timeout` for room
    /// (`Err(Timeout)` after that; the time waited is added to the ring's dead time at once
    /// and to the [`SlotMut::blocked_ns`] of the next event published, also when this claim
    /// timed out). `drop` policy: never waits; a full ring counts the event as lost and
    /// returns `Err(Full)`.
    ///
    /// ```
    /// # use daq_engine::dtype::Dtype;
    /// # use daq_engine::ring::{Policy, Ring, RingSpec};
    /// # use daq_engine::shm::{places, HugePages};
    /// # let spec = RingSpec {
    /// #     name: format!("doc-claim-{}", std::process::id()),
    /// #     dtype: Dtype::parse([("ch0", "f4")]).unwrap(),
    /// #     data_length: 16,
    /// #     slot_count: 2,
    /// #     policy: Policy::Drop,
    /// #     groups: vec![1],
    /// # };
    /// # let ring = Ring::create(&places(HugePages::Off, None), &spec).unwrap();
    /// use daq_engine::ring::ClaimError;
    /// use std::time::Duration;
    ///
    /// let mut producer = ring.producer().unwrap();
    /// let _reader = ring.reader(0, 0).unwrap(); // reads nothing
    /// for e in 0..2 {
    ///     let mut slot = producer.claim(Duration::ZERO).unwrap();
    ///     slot.data_mut()[..4].copy_from_slice(&(e as f32).to_le_bytes());
    ///     slot.publish();
    /// }
    /// // `drop` policy, ring full: the event is refused and counted.
    /// assert_eq!(producer.claim(Duration::ZERO).err(), Some(ClaimError::Full));
    /// assert_eq!(ring.stats().lost, 1);
    /// ```
    #[inline]
    pub fn claim(&mut self, timeout: Duration) -> Result<SlotMut<'_>, ClaimError> {
        self.room_for_one(timeout)?;
        let e = self.w;
        self.ring
            .inner
            .slot_header(e)
            .seq
            .store(2 * e + 1, Ordering::Relaxed);
        sync::fence(Ordering::Release);
        let blocked_ns = self.pending_ns;
        Ok(SlotMut {
            producer: self,
            e,
            blocked_ns,
        })
    }

    /// Room for the next event, as [`Producer::claim`] waits for it (`block`) or refuses
    /// and counts the event lost (`drop`).
    #[inline]
    fn room_for_one(&mut self, timeout: Duration) -> Result<(), ClaimError> {
        let core = self.ring.inner.core();
        if core.has_room(self.w, &mut self.cached) {
            return Ok(());
        }
        self.no_room(timeout)
    }

    /// [`Producer::room_for_one`] when the ring looked full: wait or refuse.
    #[cold]
    fn no_room(&mut self, timeout: Duration) -> Result<(), ClaimError> {
        let core = self.ring.inner.core();
        if self.ring.inner.policy == Policy::Drop {
            core.ctl.stats.lost.fetch_add(1, Ordering::Relaxed);
            return Err(ClaimError::Full);
        }
        if self.wait_booked(timeout) {
            Ok(())
        } else {
            Err(ClaimError::Timeout)
        }
    }

    /// Claims the slots of up to `n` next events at once, for a producer of many small
    /// events: [`Slots::publish`] then makes them all visible with one store of the shared
    /// cursor and one look for sleeping readers, instead of one per event.
    ///
    /// Waits for (or, under `drop`, refuses and counts lost) room for the first event
    /// exactly as [`Producer::claim`] does; it never waits for more. The batch holds as
    /// many of the `n` (at least one) as there is room for now. The dead time waited goes
    /// to the batch's first event ([`Slots::blocked_ns`]), so the events' dead times still
    /// add up to the ring's `blocked_ns`.
    ///
    /// ```
    /// # use daq_engine::dtype::Dtype;
    /// # use daq_engine::ring::{Policy, Ring, RingSpec};
    /// # use daq_engine::shm::{places, HugePages};
    /// # let spec = RingSpec {
    /// #     name: format!("doc-claim-batch-{}", std::process::id()),
    /// #     dtype: Dtype::parse([("ch0", "f4")]).unwrap(),
    /// #     data_length: 16,
    /// #     slot_count: 8,
    /// #     policy: Policy::Block,
    /// #     groups: vec![1],
    /// # };
    /// # let ring = Ring::create(&places(HugePages::Off, None), &spec).unwrap();
    /// use daq_engine::ring::Next;
    /// use std::time::Duration;
    ///
    /// let mut producer = ring.producer().unwrap();
    /// let mut reader = ring.reader(0, 0).unwrap();
    /// let mut slots = producer.claim_batch(5, Duration::ZERO).unwrap();
    /// assert_eq!(slots.len(), 5);
    /// for i in 0..slots.len() {
    ///     slots.meta_mut(i).counter = 10 + i as i64;
    /// }
    /// slots.publish_first(3); // the other two stay unpublished, their slots untouched
    /// assert_eq!(producer.published(), 3);
    /// for want in 10..13 {
    ///     let Next::Event(ev) = reader.try_next() else { panic!("published") };
    ///     assert_eq!(ev.meta().counter, want);
    /// }
    /// assert!(matches!(reader.try_next(), Next::Idle));
    /// ```
    #[inline]
    pub fn claim_batch(&mut self, n: usize, timeout: Duration) -> Result<Slots<'_>, ClaimError> {
        self.room_for_one(timeout)?;
        let inner = &*self.ring.inner;
        let core = inner.core();
        let want = (n as u64).max(1);
        let mut room = core.capacity - (self.w - self.cached);
        if room < want {
            self.cached = core.min_release(self.w);
            room = core.capacity - (self.w - self.cached);
        }
        let len = want.min(room);
        for e in self.w..self.w + len {
            inner.slot_header(e).seq.store(2 * e + 1, Ordering::Relaxed);
        }
        sync::fence(Ordering::Release);
        let (start, blocked_ns) = (self.w, self.pending_ns);
        Ok(Slots {
            producer: self,
            start,
            len,
            blocked_ns,
        })
    }

    /// Ends the stream: readers drain what was published, then see [`Next::End`](super::Next::End).
    ///
    /// ```
    /// # use daq_engine::dtype::Dtype;
    /// # use daq_engine::ring::{Policy, Ring, RingSpec};
    /// # use daq_engine::shm::{places, HugePages};
    /// # let spec = RingSpec {
    /// #     name: format!("doc-close-{}", std::process::id()),
    /// #     dtype: Dtype::parse([("ch0", "f4")]).unwrap(),
    /// #     data_length: 16,
    /// #     slot_count: 8,
    /// #     policy: Policy::Block,
    /// #     groups: vec![1],
    /// # };
    /// # let ring = Ring::create(&places(HugePages::Off, None), &spec).unwrap();
    /// use daq_engine::ring::Next;
    /// use std::time::Duration;
    ///
    /// let mut producer = ring.producer().unwrap();
    /// let mut reader = ring.reader(0, 0).unwrap();
    /// producer.claim(Duration::ZERO).unwrap().publish();
    /// producer.close();
    /// assert!(matches!(reader.try_next(), Next::Event(_)));
    /// assert!(matches!(reader.try_next(), Next::End));
    /// ```
    pub fn close(self) {
        self.ring.inner.core().close();
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        let core = self.ring.inner.core();
        let _ = core.ctl.producer_pid.compare_exchange(
            std::process::id(),
            0,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }
}

/// A slot being written. [`SlotMut::publish`] makes it visible; dropping it unpublished
/// leaves the slot to the next claim.
pub struct SlotMut<'p> {
    producer: &'p mut Producer,
    /// The event being written: the producer's `w`; its slot is released by every active group.
    e: u64,
    /// The event's dead time (the producer's pending wait at claim time).
    blocked_ns: u64,
}

// SlotMut is not a `Slots` of one: a claim returning the batch type by value through a
// call that was not inlined cost the engine's importer 2.6x in tiny events
// (bench pipeline's tiny_direct, 2026-12-05), and `claim` is the per-event path.

impl SlotMut<'_> {
    /// The event's records (`data_length × record_size` bytes), to fill in place.
    pub fn data_mut(&mut self) -> &mut [u8] {
        self.parts().0
    }

    /// The event's metadata record.
    pub fn meta_mut(&mut self) -> &mut Metadata {
        self.parts().1
    }

    /// Both at once, for code that fills data and metadata together.
    pub fn parts(&mut self) -> (&mut [u8], &mut Metadata) {
        // SAFETY: the protocol gives this slot to the producer alone until publish (every
        // active group released its previous event), and `&mut self` keeps the borrows
        // from outliving this claim.
        unsafe { slot_parts(self.producer, self.e) }
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
    ///
    /// ```
    /// # use daq_engine::dtype::Dtype;
    /// # use daq_engine::ring::{Policy, Ring, RingSpec};
    /// # use daq_engine::shm::{places, HugePages};
    /// # let spec = RingSpec {
    /// #     name: format!("doc-publish-{}", std::process::id()),
    /// #     dtype: Dtype::parse([("ch0", "f4")]).unwrap(),
    /// #     data_length: 16,
    /// #     slot_count: 8,
    /// #     policy: Policy::Block,
    /// #     groups: vec![1],
    /// # };
    /// # let ring = Ring::create(&places(HugePages::Off, None), &spec).unwrap();
    /// use daq_engine::ring::Next;
    /// use std::time::Duration;
    ///
    /// let mut producer = ring.producer().unwrap();
    /// let mut reader = ring.reader(0, 0).unwrap();
    /// let mut slot = producer.claim(Duration::ZERO).unwrap();
    /// slot.meta_mut().counter = 41;
    /// drop(slot); // not published: nobody sees it, the next claim gets the same slot
    /// assert!(matches!(reader.try_next(), Next::Idle));
    /// let mut slot = producer.claim(Duration::ZERO).unwrap();
    /// assert_eq!(slot.index(), 0);
    /// slot.meta_mut().counter = 42;
    /// slot.publish();
    /// let Next::Event(ev) = reader.try_next() else {
    ///     panic!("the published event")
    /// };
    /// assert_eq!((ev.index(), ev.meta().counter), (0, 42));
    /// ```
    pub fn publish(self) {
        let inner = &*self.producer.ring.inner;
        inner
            .slot_header(self.e)
            .seq
            .store(2 * self.e + 2, Ordering::Release);
        self.producer.w = self.e + 1;
        self.producer.pending_ns = 0;
        inner.core().publish(self.e + 1);
    }
}

/// Slot `e`'s records and metadata.
///
/// # Safety
/// The slot must be `producer`'s alone to write (claimed, not yet published) for as long as
/// the returned borrows live.
#[inline]
unsafe fn slot_parts(producer: &mut Producer, e: u64) -> (&mut [u8], &mut Metadata) {
    let inner = &*producer.ring.inner;
    let base = inner.slot(e);
    // SAFETY: the caller's contract makes the slot ours; its data region is SLOT_HEADER ..
    // SLOT_HEADER + data_bytes inside the slot, and the metadata sits 8-aligned at offset 8
    // of its SlotHeader: the two ranges do not overlap.
    unsafe {
        (
            std::slice::from_raw_parts_mut(base.add(SLOT_HEADER), inner.data_bytes()),
            &mut (*(base as *mut SlotHeader)).meta,
        )
    }
}

// No Drop for SlotMut or Slots: a slot claimed but not published keeps the word `2e + 1`
// ("being written") until the next claim of the same event writes it again. Putting the
// previous lap's `2(e - slots) + 2` back, as this once did, could tell an observer holding
// a stale cursor (it read `write` a lap ago) that the slot held that earlier event while its
// bytes were already the new one's: a torn copy passing the seqlock check.

/// The slots of several next events being written ([`Producer::claim_batch`]), numbered
/// `0..len()`. [`Slots::publish`] makes them visible at once; slots left unpublished go to
/// the next claim, their sequence words still saying "being written" (as [`SlotMut`]'s).
pub struct Slots<'p> {
    producer: &'p mut Producer,
    /// The first event: the producer's `w`; events `start..start + len` are this batch's,
    /// every one of their slots released by every active group.
    start: u64,
    /// Events in the batch, 1 ..= the ring's capacity.
    len: u64,
    /// The first event's dead time (the producer's pending wait at claim time).
    blocked_ns: u64,
}

impl Slots<'_> {
    /// Number of slots in the batch (at least 1).
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Always false: a batch holds at least one slot.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The event number (in this ring) of slot `i`.
    pub fn index(&self, i: usize) -> u64 {
        self.start + i as u64
    }

    /// The dead time of the batch's first event (see [`SlotMut::blocked_ns`]); the others
    /// had room at once.
    pub fn blocked_ns(&self) -> u64 {
        self.blocked_ns
    }

    /// Slot `i`'s records (`data_length × record_size` bytes), to fill in place.
    /// Panics if `i >= len()`.
    pub fn data_mut(&mut self, i: usize) -> &mut [u8] {
        self.parts(i).0
    }

    /// Slot `i`'s metadata record. Panics if `i >= len()`.
    pub fn meta_mut(&mut self, i: usize) -> &mut Metadata {
        self.parts(i).1
    }

    /// Slot `i`'s records and metadata at once. Panics if `i >= len()`.
    pub fn parts(&mut self, i: usize) -> (&mut [u8], &mut Metadata) {
        assert!((i as u64) < self.len, "slot {i} of a batch of {}", self.len);
        // SAFETY: the protocol gives every slot of the batch to the producer alone until it
        // is published (each active group released its previous lap), and `&mut self`
        // keeps the two borrows of one slot from outliving this one.
        unsafe { slot_parts(self.producer, self.start + i as u64) }
    }

    /// Publishes every slot of the batch.
    pub fn publish(self) {
        let n = self.len();
        self.publish_first(n);
    }

    /// Publishes slots `0..k` (all if `k >= len()`): their sequence words in order, then
    /// the shared cursor once. The rest are given back unpublished.
    pub fn publish_first(self, k: usize) {
        let k = (k as u64).min(self.len);
        if k == 0 {
            return;
        }
        let inner = &*self.producer.ring.inner;
        for e in self.start..self.start + k {
            inner.slot_header(e).seq.store(2 * e + 2, Ordering::Release);
        }
        self.producer.w = self.start + k;
        self.producer.pending_ns = 0;
        inner.core().publish(self.start + k);
    }
}
