//! The cursor protocol of a ring, independent of where its memory lives.
//!
//! Everything here works on references to the shared control block, so the same code runs
//! over a shared-memory mapping in production and over heap memory with loom's atomics in the
//! model tests. Cursors count events from 0 and never wrap (2^64 events is ~58,000 years at
//! 10 MHz); event `e` lives in slot `e % slots`.
//!
//! Invariants (for every consumer group `g`, with `w` = `Control::write`):
//! - `release[g] <= claim[g] <= w` and `w - min(release over active groups) <= slots`:
//!   the producer never writes a slot some active group has not released.
//! - `done[g][e % slots] == e + 1` exactly when event `e` was released by group `g` and the
//!   slot has not been released for a later lap.
//! - A member publishes the range it is about to claim in `held` *before* moving `claim[g]`,
//!   so every claimed, unreleased event is covered by its owner's `held`: the supervisor can
//!   release the events of a member that died without ever releasing a live member's.
//! - A member whose claim lost the race withdraws its `held` (HELD_NONE) before it does
//!   anything else, so a live member's `held` covers another member's events only for the
//!   moment between a failed compare-exchange and that store, never while it idles.

use super::sync::{futex_wait, futex_wake, spin, AtomicU32, AtomicU64, Ordering};

/// Consumer groups a ring can have.
pub const MAX_GROUPS: usize = 16;
/// Processes one consumer group can have.
pub const MAX_MEMBERS: usize = 16;
/// `Member::held` when the member holds nothing.
pub(crate) const HELD_NONE: u64 = u64::MAX;
/// Largest batch a member claims at once (fits the 16-bit length in `held`).
pub(crate) const MAX_BATCH: u64 = 0xFFFF;
/// Spin iterations before a waiter sleeps on the futex.
const SPINS: u32 = 2_000;

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

#[cfg(loom)]
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

#[cfg(loom)]
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

/// A view of one ring's shared control memory.
#[derive(Clone, Copy)]
pub(crate) struct Core<'a> {
    pub ctl: &'a Control,
    pub groups: &'a [Group],
    /// `groups.len() * slots` words: `done[g * slots + s]`.
    pub done: &'a [AtomicU64],
    /// Slot count, a power of two.
    pub slots: u64,
}

impl<'a> Core<'a> {
    #[inline]
    fn done(&self, g: usize, e: u64) -> &'a AtomicU64 {
        &self.done[g * self.slots as usize + (e & (self.slots - 1)) as usize]
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
        if w - *cached < self.slots {
            return true;
        }
        *cached = self.min_release(w);
        w - *cached < self.slots
    }

    /// Publishes events below `w_new` and wakes sleeping readers, if any.
    #[inline]
    pub fn publish(&self, w_new: u64) {
        self.ctl.write.store(w_new, Ordering::SeqCst);
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

    /// Member `m` of group `g` claims up to `batch` published events.
    pub fn claim(&self, g: usize, m: usize, batch: u64) -> Claim {
        let grp = &self.groups[g];
        let mem = &grp.members[m];
        let batch = batch.clamp(1, MAX_BATCH);
        loop {
            let c = grp.claim.load(Ordering::SeqCst);
            let w = self.ctl.write.load(Ordering::SeqCst);
            if c >= w {
                if self.ctl.eos.load(Ordering::SeqCst) == 0 {
                    return Claim::Empty;
                }
                // Closed: the producer's last publish precedes `eos`, so a fresh read of
                // `write` is final.
                if c >= self.ctl.write.load(Ordering::SeqCst) {
                    return Claim::End;
                }
                continue;
            }
            let end = w.min(c + batch);
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
        let grp = &self.groups[g];
        grp.members[m].released.fetch_add(1, Ordering::Relaxed);
        if grp.info.members.load(Ordering::Relaxed) == 1 {
            // Sole member: its releases are in order, so the cursor is simply e + 1.
            grp.release.store(e + 1, Ordering::SeqCst);
        } else {
            self.done(g, e).store(e + 1, Ordering::SeqCst);
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
        if sw.waiting.load(Ordering::SeqCst) != 0 {
            sw.futex.fetch_add(1, Ordering::SeqCst);
            futex_wake(&sw.futex);
        }
    }

    /// Waits (spin, then futex) until something may be claimable by group `g` or the stream
    /// ended, at most `timeout_ns`.
    pub fn wait_data(&self, g: usize, timeout_ns: u64) {
        let grp = &self.groups[g];
        let ready = || {
            grp.claim.load(Ordering::SeqCst) < self.ctl.write.load(Ordering::SeqCst)
                || self.ctl.eos.load(Ordering::SeqCst) != 0
        };
        for _ in 0..SPINS {
            if ready() {
                return;
            }
            spin();
        }
        let dw = &self.ctl.data_wait;
        let seen = dw.futex.load(Ordering::SeqCst);
        dw.waiting.fetch_add(1, Ordering::SeqCst);
        if !ready() {
            futex_wait(&dw.futex, seen, timeout_ns);
        }
        dw.waiting.fetch_sub(1, Ordering::SeqCst);
    }

    // ---------------------------------------------------------------- supervisor side

    /// Releases the events member `m` of group `g` holds, on the word of the supervisor that
    /// `m`'s process, `dead_pid`, is dead. `alive(i)` says whether member `i`'s process lives.
    /// Returns how many events were released for it and whether `m`'s record is now settled
    /// (everything it covered is released or was never claimed); call again until it is.
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
        let claimed = grp.claim.load(Ordering::SeqCst);
        let mut released = 0;
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
                released += 1;
            }
        }
        if released > 0 {
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
