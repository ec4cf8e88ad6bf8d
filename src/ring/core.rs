//! The cursor protocol of a ring, independent of where its memory lives.
//!
//! Everything here works on references to the shared control block, so the same code runs
//! over a shared-memory mapping in production and over heap memory with loom's atomics in the
//! model tests. Cursors count events from 0 and never wrap (2^64 events is ~58,000 years at
//! 10 MHz); event `e` lives in slot `e % slots`.
//!
//! Invariants (for every consumer group `g`, with `w` = `Control::write` and `p` = the
//! events published, i.e. whose slot words say `2e + 2`; `w <= p`, and `w` catches up with
//! `p` at the end of each (batched) publish):
//! - `release[g] <= claim[g] <= p` and `p - min(release over active groups) <= capacity`
//!   (`capacity <= slots`): the producer never writes a slot some active group has not
//!   released, and never has more than `capacity` events in flight. A group of one member
//!   learns of events from the slot words, so its `claim` may run ahead of `w` (never of
//!   `p`); groups of several claim below `w`.
//! - `done[g][e % slots] == e + 1` exactly when event `e` was released by group `g` and the
//!   slot has not been released for a later lap.
//! - A member publishes the range it is about to claim in `held` *before* moving `claim[g]`,
//!   so every claimed, unreleased event is covered by its owner's `held`: the supervisor can
//!   release the events of a member that died without ever releasing a live member's.
//! - A member whose claim lost the race withdraws its `held` (HELD_NONE) before it does
//!   anything else, so a live member's `held` covers another member's events only for the
//!   moment between a failed compare-exchange and that store, never while it idles.
//!
//! # Memory ordering
//!
//! Every atomic access of the protocol is `SeqCst` unless this section names it and says why
//! it may be weaker. What the orderings must provide comes in three kinds.
//!
//! **1. Hand-over of slot contents** (release → acquire). The producer's writes to a slot must
//! be visible to a reader that sees the event published, and a reader's reads of a slot must
//! be finished before the producer, seeing the slot released, writes it again. The "needs"
//! column is what the hand-over alone needs; several of these accesses are also one side of
//! a kind-2 pair and are `SeqCst` for that.
//!
//! | access | where | needs | why |
//! |---|---|---|---|
//! | `Control::write` store | [`Core::publish`] | Release | hands events below `w` to readers |
//! | `Control::write` loads | [`Core::claim`], [`Core::wait_data`], `Reader::ready`, the observer | Acquire | takes them over |
//! | slot word `2e + 2` store | the producer's publish (`producer.rs`), before the `write` store | Release | hands event `e` to a sole member, which does not read `write` |
//! | slot word load | [`Core::slot_published`] (sole member's claim and spin) | Acquire | takes it over; equal to `2e + 2` only for `e` itself: an earlier lap's word is smaller, and the next lap cannot start before the group releases `e` |
//! | `Group::release` store, CAS, `fetch_add(0)`, `fetch_max` | [`Core::release`], `advance`, [`Core::reclaim`] | Release | hands the slot back to the producer |
//! | `Group::release` loads | [`Core::min_release`] (producer), `reclaim` | Acquire | the producer takes the slot back |
//! | `done` store / load / CAS | `release`, `advance`, `reclaim` | Release / Acquire | a member's finished event reaches the member that moves the cursor |
//! | `Group::claim` CAS | [`Core::claim`] | AcqRel | carries the winner's `held` (kind 3) |
//!
//! **2. Dekker pairs around the futex sleep** (store → load on different words). A sleeper
//! reads the futex word (`seen`), announces itself (`waiting += 1`), then looks at its
//! condition once more and sleeps only if it still does not hold; the waker changes the
//! condition, then reads `waiting` and bumps and wakes the futex only if someone announced.
//! Both sides are "store one word, then load another": with anything weaker than `SeqCst` on
//! all four accesses (or a `SeqCst` fence between each store and its load), both loads may
//! return the old value, so the sleeper sleeps and the waker skips the wake — a lost
//! wake-up, paid with the sleeper's full timeout. `SeqCst` puts all four in one total order,
//! so at least one side sees the other. The pairs:
//!
//! | waker: store → load | sleeper: announce → look |
//! |---|---|
//! | [`Core::publish`]: `write` → `data_wait.waiting` (once per batch; the batch's slot words were stored before `write`) | [`Core::wait_data`] and `wait_any` (which looks again after announcing, whatever its caller looked at before): `data_wait.waiting` RMW → `claim`, `write`, `eos` (and a sole member's slot word, which can only add a wake-up) |
//! | [`Core::release_range`] (`release` store, or `done` stores + RMW/CAS on `release`), [`Core::reclaim`] → `space_wait.waiting` in `wake_producer` | [`Core::wait_room`]: `space_wait.waiting` RMW → `active`, `release` in `min_release` |
//!
//! [`Core::close`] and [`Core::detach`] bump the futex whether or not anyone announced, so
//! they need no `waiting` check: the sleeper read `seen` before it looked at `eos`/`active`,
//! and the bump follows the store in the single `SeqCst` order, so either the sleeper sees
//! the store or the kernel sees a futex word that is no longer `seen` (its compare and the
//! sleep are one step under the futex lock) or the wake finds the sleeper queued.
//!
//! The futex word itself (`seen` load, `fetch_add` before a wake) is `SeqCst` for the same
//! argument: `seen` must be read before the announcement, so it can never be a value bumped
//! after the condition changed.
//!
//! **3. Claim bookkeeping among members and the supervisor.** A member stores its `held`
//! range, then moves `claim` by CAS; the supervisor reads a dead member's `held`, then its
//! `pid`, then `claim`, then the other members' `held`, then `done`. "A claimed event is
//! covered by its owner's `held`" holds for the supervisor because the CAS on `claim`
//! (release) carries the `held` store sequenced before it to the supervisor's `claim` load
//! (acquire); "the `held` just read is the dead member's" holds because a newcomer stores
//! its `pid` before its first `held`, and the supervisor reads `held` (acquire) before
//! `pid`. Release/Acquire would therefore do; these run once per claimed batch (up to 64
//! events) or in the supervisor, not per event, so they stay `SeqCst` (see below).
//!
//! **Relaxed, and why that is enough:**
//! - `GroupInfo::members` in [`Core::release`]: written once by the creator before it stores
//!   the header's `ready`, read after attach loaded `ready`; never written again, so that
//!   hand-over already orders it.
//! - `Member::released`: a counter only the member's own process writes; nothing in the
//!   protocol reads it, it hands over nothing.
//! - `Member::finished` (a sole member releasing in ranges, once per event read): only the
//!   member's own process writes it, and [`Core::reclaim`] reads it only once that process
//!   is dead (its exit orders every store it made before the supervisor's look), so it
//!   hands over nothing between live processes.
//! - `ProducerStats::lost` and `blocked_ns` (in the producer): counters only the producer
//!   writes, read for display; they hand over nothing.
//! - The slot's `seq` word (seqlock for observers, in `producer.rs` and `observer.rs`):
//!   writer `seq = 2e+1` (Relaxed), `fence(Release)`, data, `seq = 2e+2` (Release); observer
//!   `seq` (Acquire), copy, `fence(Acquire)`, `seq` again (Relaxed). The fences pair up: if
//!   the copy read anything the producer wrote after its first store, the second load sees
//!   at least `2e+1` and the copy is thrown away. A slot claimed and not published keeps
//!   `2e+1` (never the earlier lap's `2e+2`, which would vouch for bytes already new). The
//!   `2e+2` store is also kind 1 for sole members (table above).
//! - `Group::claim` and `eos` in [`Core::spin_ready`]: a spinning sole member's cheap look
//!   (its own cursor, and a hint to stop spinning); what it finds is taken over by the
//!   `SeqCst` claim that follows, and the sleep's look is [`Core::claimable`], all `SeqCst`.
//!
//! **Why the rest stays `SeqCst`.** On x86-64, where this runs, a `SeqCst` load is the same
//! `mov` as an Acquire or Relaxed one, and a read-modify-write is one `lock`-prefixed
//! instruction whatever its ordering: only a `SeqCst` *store* costs more (an `xchg`, a full
//! barrier, against a plain `mov`). The frequent `SeqCst` stores are exactly the waker
//! sides of the Dekker pairs (`write` in publish, a sole member's `release`), which need it;
//! both are paid once per batch, not per event, where the producer publishes a batch
//! ([`Core::publish`] of many) and a sole member of a `block` ring releases its claimed
//! range at once ([`Core::release_range`]).
//! What could be weaker without a Dekker argument — the `held` store per claimed batch, a
//! shared group's `done` store, the loads — either costs nothing on x86 or runs too rarely
//! to measure; `SeqCst` there keeps the arguments above short. The one change that would
//! take an instruction off the per-event path — `Member::released` as a load and a store
//! instead of a locked `fetch_add` (sound: it has a single writer) — was measured with the
//! ring bench and was not distinguishable from noise (BENCHMARKS.md, "Memory orderings"),
//! so it was left as it is.
//!
//! Outside this file: the header's `ready` (stored after every other header field, needs
//! Release; loaded first on attach, needs Acquire) and the `pid` word of each role
//! (compare-exchange when a role is taken or given back) are `SeqCst`, once per attach or
//! role; `Ring::stats` reads every counter `SeqCst` for display.
//!
//! **What proves it.** The loom models (`loom_tests.rs`) explore the interleavings of
//! producer, groups, members and supervisor: slot reuse (a read of a slot the producer may
//! be writing is reported as a data race), every event once per group, reclaim and
//! takeover. loom gives `SeqCst` loads, stores and read-modify-writes only acquire/release
//! strength (its README; tokio-rs/loom#180), so these models prove kinds 1 and 3 with
//! Release/Acquire — which is why the table above can say so. Kind 2 needs the single
//! `SeqCst` order loom does not model; loom does model `SeqCst` fences, so each Dekker side
//! calls `sync::seqcst_order()` between its store and its load: a `SeqCst` fence under loom,
//! nothing in a real build (where the `SeqCst` accesses already give that order). Under
//! loom the futex is a condition variable without timeout, so a lost wake-up is a
//! deadlock; `sleepers_on_the_futex_are_always_woken` drives `wait_room` and `wait_data`
//! against each other over one slot, and `a_merged_reader_asleep_on_two_rings_is_always_woken`
//! does the same for `wait_any`; `a_sole_reader_asleep_is_woken_by_a_batch_publish` for a
//! sole member (slot words, ranges released at once) against a batched producer, and
//! `batch_publish_to_a_sole_reader_reading_the_slot_words` checks the slot-word hand-over
//! and wrap-around (five events through two slots in batches of two, released per range:
//! a read before the word said so, or of an earlier lap's slot, is a wrong payload or a
//! data race). Without the fence in [`Core::publish`], or the one in
//! `wake_producer`, the first deadlocks, as the argument above says it must; without the
//! second look in `wait_any` (as it was before), the second does.

use super::sync::{futex_wait, futex_wake, seqcst_order, spin, AtomicU32, AtomicU64, Ordering};

/// Consumer groups a ring can have.
pub const MAX_GROUPS: usize = 16;
/// Processes one consumer group can have.
pub const MAX_MEMBERS: usize = 16;
/// `Member::held` when the member holds nothing.
pub(crate) const HELD_NONE: u64 = u64::MAX;
/// Largest batch a member claims at once (fits the 16-bit length in `held`).
pub(crate) const MAX_BATCH: u64 = 0xFFFF;
/// Spin iterations before a waiter sleeps on the futex (one under loom, where each is a
/// scheduling point and the sleep is what the models are after).
#[cfg(not(daq_loom))]
const SPINS: u32 = 2_000;
#[cfg(daq_loom)]
const SPINS: u32 = 1;

/// One cache-line pair of its own (128 bytes: x86 prefetches lines in pairs), so cursors
/// written by different processes never share a line. Derefs to the value it holds, so a
/// cursor reads `ctl.write.load(..)`.
#[repr(C, align(128))]
pub(crate) struct Line<T>(pub T);

impl<T> std::ops::Deref for Line<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}

/// A futex word and a count of sleepers on it.
#[repr(C)]
pub(crate) struct Waiters {
    /// Bumped by the waker; sleepers wait while it is unchanged.
    pub futex: AtomicU32,
    /// Number of processes about to sleep or sleeping on `futex`.
    pub waiting: AtomicU32,
}

/// Counters only the producer writes.
#[repr(C)]
pub(crate) struct ProducerStats {
    /// Events refused because the ring was full under the `drop` policy.
    pub lost: AtomicU64,
    /// Nanoseconds the producer spent waiting for room under the `block` policy.
    pub blocked_ns: AtomicU64,
}

/// The producer's side of the control block.
#[repr(C)]
pub(crate) struct Control {
    /// Events published. Only the producer stores it; 0 ..= u64::MAX.
    pub write: Line<AtomicU64>,
    /// 1 once the producer has published its last event (end of stream), else 0.
    pub eos: Line<AtomicU64>,
    /// Readers waiting for data.
    pub data_wait: Line<Waiters>,
    /// The producer waiting for room.
    pub space_wait: Line<Waiters>,
    /// Producer counters.
    pub stats: Line<ProducerStats>,
    /// Pid of the attached producer process, 0 when none.
    pub producer_pid: Line<AtomicU32>,
}

/// Facts about a group the producer reads rarely.
#[repr(C)]
pub(crate) struct GroupInfo {
    /// Number of members (processes) this group was created with, 1 ..= MAX_MEMBERS.
    pub members: AtomicU32,
    /// 1 while the producer must wait for this group; 0 once detached by the supervisor.
    pub active: AtomicU32,
    /// Events released unread: on behalf of members that died holding them, or by members
    /// that left before reading all they had claimed.
    pub abandoned: AtomicU64,
}

/// One member (process) of a consumer group.
#[repr(C)]
pub(crate) struct Member {
    /// Pid of the process attached as this member, 0 when none.
    pub pid: AtomicU32,
    /// The range claimed or being claimed: `start << 16 | len`, or HELD_NONE.
    pub held: AtomicU64,
    /// Events this process released as this member: read, or left unread when it dropped its
    /// reader (those are also counted in `GroupInfo::abandoned`). Not the events the
    /// supervisor released for a dead holder. Written only by the member's own process
    /// (one live process per member), so it is a single-writer counter.
    pub released: AtomicU64,
    /// A sole member that releases in ranges (`Reader::set_small_events`): every event
    /// below this it has read, released or not yet. [`Core::reclaim`] counts the events of
    /// a dead member below this mark as read, not abandoned, so the books are the same as
    /// if it had released each event on reading it. 0 (never written) marks nothing.
    /// Written only by the member's own process, read only after that process died.
    pub finished: AtomicU64,
}

/// One consumer group.
#[repr(C)]
pub(crate) struct Group {
    /// Next event a member of this group will claim.
    pub claim: Line<AtomicU64>,
    /// All events below this are released by this group.
    pub release: Line<AtomicU64>,
    /// Rarely written facts.
    pub info: Line<GroupInfo>,
    /// Members.
    pub members: [Line<Member>; MAX_MEMBERS],
}

#[cfg(daq_loom)]
impl Control {
    pub(crate) fn new_boxed() -> Box<Control> {
        let w = || {
            Line(Waiters {
                futex: AtomicU32::new(0),
                waiting: AtomicU32::new(0),
            })
        };
        Box::new(Control {
            write: Line(AtomicU64::new(0)),
            eos: Line(AtomicU64::new(0)),
            data_wait: w(),
            space_wait: w(),
            stats: Line(ProducerStats {
                lost: AtomicU64::new(0),
                blocked_ns: AtomicU64::new(0),
            }),
            producer_pid: Line(AtomicU32::new(0)),
        })
    }
}

#[cfg(daq_loom)]
impl Group {
    pub(crate) fn new(members: u32) -> Group {
        Group {
            claim: Line(AtomicU64::new(0)),
            release: Line(AtomicU64::new(0)),
            info: Line(GroupInfo {
                members: AtomicU32::new(members),
                active: AtomicU32::new(1),
                abandoned: AtomicU64::new(0),
            }),
            members: std::array::from_fn(|_| {
                Line(Member {
                    pid: AtomicU32::new(0),
                    held: AtomicU64::new(HELD_NONE),
                    released: AtomicU64::new(0),
                    finished: AtomicU64::new(0),
                })
            }),
        }
    }
}

/// Packs a held range.
#[inline]
pub(crate) fn pack_held(start: u64, len: u64) -> u64 {
    debug_assert!(len <= MAX_BATCH && start < (1 << 48));
    start << 16 | len
}

/// Unpacks a held range into `start..end`.
#[inline]
pub(crate) fn unpack_held(h: u64) -> Option<(u64, u64)> {
    (h != HELD_NONE).then(|| (h >> 16, (h >> 16) + (h & 0xFFFF)))
}

/// What a member's claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Events `start..end` are this member's.
    Got(u64, u64),
    /// Nothing published yet.
    Empty,
    /// End of stream, everything claimed.
    End,
}

/// The slots' sequence words (`SlotHeader::seq` in a mapping, a plain array under loom):
/// `slots` words, `stride` bytes apart from `base`. Slot `s`'s word is `2e + 1` while event
/// `e` (with `e % slots == s`) is being written and `2e + 2` once it is published.
#[derive(Clone, Copy)]
pub(crate) struct SeqWords<'a> {
    base: *const u8,
    stride: usize,
    _words: std::marker::PhantomData<&'a AtomicU64>,
}

impl<'a> SeqWords<'a> {
    /// # Safety
    /// `base + s * stride` for every `s < slots` of the ring this is used with must be an
    /// 8-aligned, live `AtomicU64` for `'a`.
    pub(crate) unsafe fn new(base: *const u8, stride: usize) -> SeqWords<'a> {
        SeqWords {
            base,
            stride,
            _words: std::marker::PhantomData,
        }
    }

    /// Over the words of a slice (one word per slot, as the loom models keep them).
    #[cfg(daq_loom)]
    pub(crate) fn of(words: &'a [AtomicU64]) -> SeqWords<'a> {
        // SAFETY: consecutive elements of a live slice.
        unsafe {
            SeqWords::new(
                words.as_ptr() as *const u8,
                std::mem::size_of::<AtomicU64>(),
            )
        }
    }
}

/// A view of one ring's shared control memory.
#[derive(Clone, Copy)]
pub(crate) struct Core<'a> {
    pub ctl: &'a Control,
    pub groups: &'a [Group],
    /// `groups.len() * slots` words: `done[g * slots + s]`.
    pub done: &'a [AtomicU64],
    /// Each slot's sequence word.
    pub seqs: SeqWords<'a>,
    /// Slot count, a power of two.
    pub slots: u64,
    /// Events in flight at most, 1 ..= `slots`: the ring is full at this many.
    pub capacity: u64,
}

impl<'a> Core<'a> {
    #[inline]
    fn done(&self, g: usize, e: u64) -> &'a AtomicU64 {
        &self.done[g * self.slots as usize + (e & (self.slots - 1)) as usize]
    }

    /// The sequence word of event `e`'s slot.
    #[inline]
    pub fn seq(&self, e: u64) -> &'a AtomicU64 {
        let s = (e & (self.slots - 1)) as usize;
        // SAFETY: s < slots, and `SeqWords::new`'s contract makes each such word live for 'a.
        unsafe { &*(self.seqs.base.add(s * self.seqs.stride) as *const AtomicU64) }
    }

    /// True when event `e` is published, seen in its slot's own sequence word (Acquire: it
    /// takes over the slot's contents, paired with the producer's Release store of `2e + 2`).
    /// Valid for an event its group has not released: the producer cannot start the
    /// slot's next lap before that, and an earlier lap's word is below `2e + 2`.
    #[inline]
    pub fn slot_published(&self, e: u64) -> bool {
        self.seq(e).load(Ordering::Acquire) == 2 * e + 2
    }

    /// Group `g` is read by one member, which then learns what is published from the slot
    /// words rather than from the write cursor.
    #[inline]
    fn sole(&self, g: usize) -> bool {
        self.groups[g].info.members.load(Ordering::Relaxed) == 1
    }

    // ---------------------------------------------------------------- producer side

    /// The oldest event some active group still holds (== `w` when all are released).
    pub fn min_release(&self, w: u64) -> u64 {
        let mut m = w;
        for g in self.groups {
            if g.info.active.load(Ordering::SeqCst) != 0 {
                m = m.min(g.release.load(Ordering::SeqCst));
            }
        }
        m
    }

    /// True when the producer may write event `w`. `cached` is the producer's private copy of
    /// the minimum release cursor, refreshed only when the ring looks full.
    #[inline]
    pub fn has_room(&self, w: u64, cached: &mut u64) -> bool {
        if w - *cached < self.capacity {
            return true;
        }
        *cached = self.min_release(w);
        w - *cached < self.capacity
    }

    /// Publishes events below `w_new` (whose slot words already say so) and wakes sleeping
    /// readers, if any. One call may publish many events: the batched producer's one store
    /// of the cursor and one look at `waiting` for the whole batch.
    #[inline]
    pub fn publish(&self, w_new: u64) {
        self.ctl.write.store(w_new, Ordering::SeqCst);
        seqcst_order();
        if self.ctl.data_wait.waiting.load(Ordering::SeqCst) != 0 {
            self.ctl.data_wait.futex.fetch_add(1, Ordering::SeqCst);
            futex_wake(&self.ctl.data_wait.futex);
        }
    }

    /// Marks the end of the stream and wakes every reader.
    pub fn close(&self) {
        self.ctl.eos.store(1, Ordering::SeqCst);
        self.ctl.data_wait.futex.fetch_add(1, Ordering::SeqCst);
        futex_wake(&self.ctl.data_wait.futex);
    }

    /// Waits until event `w` may be written or `timeout_ns` passed (spin, then futex).
    /// Returns whether there is room.
    pub fn wait_room(&self, w: u64, cached: &mut u64, timeout_ns: u64, now: fn() -> u64) -> bool {
        for _ in 0..SPINS {
            if self.has_room(w, cached) {
                return true;
            }
            spin();
        }
        let start = now();
        let sw = &self.ctl.space_wait;
        loop {
            let seen = sw.futex.load(Ordering::SeqCst);
            sw.waiting.fetch_add(1, Ordering::SeqCst);
            seqcst_order();
            let room = self.has_room(w, cached);
            if !room {
                let left = timeout_ns.saturating_sub(now() - start);
                if left > 0 {
                    futex_wait(&sw.futex, seen, left.min(100_000_000));
                }
            }
            sw.waiting.fetch_sub(1, Ordering::SeqCst);
            if room || self.has_room(w, cached) {
                return true;
            }
            if now() - start >= timeout_ns {
                return false;
            }
        }
    }

    // ---------------------------------------------------------------- consumer side

    /// Member `m` of group `g` claims up to `batch` published events. `slot_words`: a sole
    /// member looks at the slots' sequence words instead of the write cursor (see
    /// `Reader::set_small_events`).
    pub fn claim(&self, g: usize, m: usize, batch: u64, slot_words: bool) -> Claim {
        let grp = &self.groups[g];
        let mem = &grp.members[m];
        let batch = batch.clamp(1, MAX_BATCH);
        let sole = slot_words && self.sole(g);
        loop {
            let c = grp.claim.load(Ordering::SeqCst);
            let end = if sole {
                // A sole member reads the slots' own words (which it reads next anyway)
                // instead of the write cursor, the line the producer stores at every publish.
                let mut end = c;
                while end < c + batch && self.slot_published(end) {
                    end += 1;
                }
                end
            } else {
                self.ctl.write.load(Ordering::SeqCst).min(c + batch)
            };
            if end <= c {
                if self.ctl.eos.load(Ordering::SeqCst) == 0 {
                    return Claim::Empty;
                }
                // Closed: the producer's last publish (slot words, then `write`) precedes
                // `eos`, so a fresh read of `write` is final.
                if c >= self.ctl.write.load(Ordering::SeqCst) {
                    return Claim::End;
                }
                continue;
            }
            // Publish the range first: a claimed event is always covered by its owner's `held`.
            mem.held.store(pack_held(c, end - c), Ordering::SeqCst);
            if grp
                .claim
                .compare_exchange(c, end, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                return Claim::Got(c, end);
            }
            // Lost the race: another member owns c.. now. Withdraw the announcement before
            // anything else; left standing, it would cover the winner's events for good if
            // we went idle (nothing more published), and the supervisor could never release
            // them should the winner die. We hold nothing here: a member claims only after
            // releasing everything it claimed before.
            mem.held.store(HELD_NONE, Ordering::SeqCst);
        }
    }

    /// Member `m` of group `g` releases event `e` (which it claimed). Members release their
    /// own events in order; different members may finish out of order.
    #[inline]
    pub fn release(&self, g: usize, m: usize, e: u64) {
        self.release_range(g, m, e, e + 1);
    }

    /// Member `m` of group `g` releases its claimed events `start..end` at once: for a sole
    /// member one store of the cursor (and one look for a sleeping producer) for the lot.
    #[inline]
    pub fn release_range(&self, g: usize, m: usize, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let grp = &self.groups[g];
        grp.members[m]
            .released
            .fetch_add(end - start, Ordering::Relaxed);
        if grp.info.members.load(Ordering::Relaxed) == 1 {
            // Sole member: its releases are in order, so the cursor is simply `end`.
            grp.release.store(end, Ordering::SeqCst);
        } else {
            for e in start..end {
                self.done(g, e).store(e + 1, Ordering::SeqCst);
            }
            self.advance(g);
        }
        self.wake_producer();
    }

    /// Moves group `g`'s release cursor over every consecutive done event.
    fn advance(&self, g: usize) {
        let grp = &self.groups[g];
        loop {
            // Read the cursor with a read-modify-write, not a load: two members finishing
            // neighbouring events store their `done` word and then look at the cursor; an RMW
            // reads the latest cursor and synchronises with the other member's RMW or
            // compare-exchange on it, so one of the two always sees the other's `done` and
            // moves the cursor on. With plain loads this relies on store→load ordering alone,
            // and loom found a schedule where neither advanced (work_sharing_inside_a_group
            // ended with the cursor at 1 of 3).
            let r = grp.release.fetch_add(0, Ordering::SeqCst);
            if self.done(g, r).load(Ordering::SeqCst) != r + 1 {
                return;
            }
            let _ = grp
                .release
                .compare_exchange(r, r + 1, Ordering::SeqCst, Ordering::SeqCst);
        }
    }

    #[inline]
    fn wake_producer(&self) {
        let sw = &self.ctl.space_wait;
        seqcst_order();
        if sw.waiting.load(Ordering::SeqCst) != 0 {
            sw.futex.fetch_add(1, Ordering::SeqCst);
            futex_wake(&sw.futex);
        }
    }

    /// True when a claim by a member of group `g` would find something: an unclaimed
    /// published event, or the end of the stream. The sleeper's look in the Dekker pair with
    /// [`Core::publish`] and [`Core::close`] (see the module's memory-ordering section).
    #[inline]
    pub fn claimable(&self, g: usize, slot_words: bool) -> bool {
        let c = self.groups[g].claim.load(Ordering::SeqCst);
        c < self.ctl.write.load(Ordering::SeqCst)
            || self.ctl.eos.load(Ordering::SeqCst) != 0
            || (slot_words && self.sole(g) && self.slot_published(c))
    }

    /// A cheap look for a spinning member of group `g`: a sole member reading slot words
    /// looks at the next slot's word only (the line it reads next anyway), others at the
    /// cursors.
    #[inline]
    pub fn spin_ready(&self, g: usize, slot_words: bool) -> bool {
        if slot_words && self.sole(g) {
            let c = self.groups[g].claim.load(Ordering::Relaxed);
            self.slot_published(c) || self.ctl.eos.load(Ordering::Relaxed) != 0
        } else {
            self.claimable(g, false)
        }
    }

    /// Waits (spin, then futex) until something may be claimable by group `g` or the stream
    /// ended, at most `timeout_ns`. `spin_ns`: spin for this long before sleeping (a reader
    /// on a core of its own, see `reader::Patience`); `None`: the short fixed spin of a
    /// reader that shares its core.
    pub fn wait_data(&self, g: usize, timeout_ns: u64, spin_ns: Option<u64>, slot_words: bool) {
        let ready = || self.claimable(g, slot_words);
        match spin_ns {
            // Under loom a spin is a yield and time stands still: the fixed spin only.
            Some(budget) if budget > 0 && !cfg!(daq_loom) => {
                let until = super::sync::now_ns().saturating_add(budget.min(timeout_ns));
                loop {
                    // The clock (vDSO, ~20 ns) once per 64 looks.
                    for _ in 0..64 {
                        if self.spin_ready(g, slot_words) {
                            return;
                        }
                        spin();
                    }
                    if super::sync::now_ns() >= until {
                        break;
                    }
                }
            }
            _ => {
                for _ in 0..SPINS {
                    if self.spin_ready(g, slot_words) {
                        return;
                    }
                    spin();
                }
            }
        }
        let dw = &self.ctl.data_wait;
        let seen = dw.futex.load(Ordering::SeqCst);
        dw.waiting.fetch_add(1, Ordering::SeqCst);
        seqcst_order();
        if !ready() {
            futex_wait(&dw.futex, seen, timeout_ns);
        }
        dw.waiting.fetch_sub(1, Ordering::SeqCst);
    }

    // ---------------------------------------------------------------- supervisor side

    /// Releases the events member `m` of group `g` holds, on the word of the supervisor that
    /// `m`'s process, `dead_pid`, is dead. `alive(i)` says whether member `i`'s process lives.
    /// Returns how many events were released for it unread (counted abandoned) and whether
    /// `m`'s record is now settled (everything it covered is released or was never claimed);
    /// call again until it is. Events below the member's `finished` mark, which it read but
    /// had not released yet (a sole member releasing in ranges), are released as read.
    ///
    /// A new process may take member `m`'s place meanwhile (it swaps its pid in, then
    /// claims): once `m`'s pid is no longer `dead_pid`, `held` may be the newcomer's, so
    /// nothing more is released or cleared here and the record counts as settled.
    pub fn reclaim(
        &self,
        g: usize,
        m: usize,
        dead_pid: u32,
        alive: &dyn Fn(usize) -> bool,
    ) -> (u64, bool) {
        let grp = &self.groups[g];
        let mem = &grp.members[m];
        let held = mem.held.load(Ordering::SeqCst);
        // Read after `held`: a newcomer stores its pid before its first `held`, so if the
        // pid is still the dead one here, the `held` just read was the dead member's.
        if mem.pid.load(Ordering::SeqCst) != dead_pid {
            return (0, true);
        }
        let Some((start, end)) = unpack_held(held) else {
            return (0, true);
        };
        // The dead process wrote its mark before it died; nothing writes it now.
        let read_mark = mem.finished.load(Ordering::SeqCst);
        let claimed = grp.claim.load(Ordering::SeqCst);
        let (mut released, mut read) = (0, 0);
        let mut settled = true;
        for e in start..end.min(claimed) {
            if e < grp.release.load(Ordering::SeqCst) {
                continue;
            }
            // A live member whose `held` covers e either owns it or is about to find its claim
            // failed and withdraw `held`; in both cases e is not ours to release now (the
            // second case settles on a later call).
            let covered = (0..grp.members.len()).any(|i| {
                i != m
                    && alive(i)
                    && unpack_held(grp.members[i].held.load(Ordering::SeqCst))
                        .is_some_and(|(s, x)| s <= e && e < x)
            });
            if covered {
                settled = false;
                continue;
            }
            let word = self.done(g, e);
            let seen = word.load(Ordering::SeqCst);
            // seen > e + 1: a later lap finished, so e was released long ago.
            if seen < e + 1
                && word
                    .compare_exchange(seen, e + 1, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            {
                if e < read_mark {
                    read += 1;
                } else {
                    released += 1;
                }
            }
        }
        if released + read > 0 {
            grp.info.abandoned.fetch_add(released, Ordering::SeqCst);
            if grp.info.members.load(Ordering::SeqCst) == 1 {
                // A sole member's cursor moves by store; catch it up over what we released.
                // fetch_max, not load + store: a member taking over may move the cursor on
                // in between, and a plain store would move it back.
                grp.release.fetch_max(end.min(claimed), Ordering::SeqCst);
            } else {
                self.advance(g);
            }
            self.wake_producer();
        }
        if settled {
            // Only the record read above: a newcomer's own claim must stay announced.
            let _ = mem
                .held
                .compare_exchange(held, HELD_NONE, Ordering::SeqCst, Ordering::SeqCst);
        }
        (released, settled)
    }

    /// Stops the producer waiting for group `g` (its consumers are gone for good).
    pub fn detach(&self, g: usize) {
        self.groups[g].info.active.store(0, Ordering::SeqCst);
        self.ctl.space_wait.futex.fetch_add(1, Ordering::SeqCst);
        futex_wake(&self.ctl.space_wait.futex);
    }
}
