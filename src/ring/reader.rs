//! The reader role: a member of a consumer group ([`Reader`]), the event it borrows in place
//! ([`SlotRef`]), and sleeping on several rings at once ([`wait_any`]).
//!
//! Must never: hand out an event twice inside a group, or release an event while it is
//! still borrowed.

use super::attach::Ring;
use super::core::{self, Claim, Core};
use super::error::RoleError;
use super::layout::{Policy, SLOT_HEADER};
use super::nanos;
use super::sync::{self, AtomicU32, Ordering};
use crate::dtype::Metadata;
use crate::shm::pid_alive;
use std::time::Duration;

/// What a reader got.
pub enum Next<'r> {
    /// An event, borrowed in place until dropped.
    Event(SlotRef<'r>),
    /// Nothing within the timeout.
    Idle,
    /// The producer closed the stream and everything was read.
    End,
}

impl Ring {
    /// Takes the role of member `member` of consumer group `group` for this process.
    ///
    /// ```
    /// # use daq_engine::dtype::Dtype;
    /// # use daq_engine::ring::{Policy, Ring, RingSpec};
    /// # use daq_engine::shm::{places, HugePages};
    /// # let spec = RingSpec {
    /// #     name: format!("doc-reader-{}", std::process::id()),
    /// #     dtype: Dtype::parse([("ch0", "f4")]).unwrap(),
    /// #     data_length: 16,
    /// #     slot_count: 8,
    /// #     policy: Policy::Block,
    /// #     groups: vec![2],
    /// # };
    /// # let ring = Ring::create(&places(HugePages::Off, None), &spec).unwrap();
    /// use daq_engine::ring::RoleError;
    ///
    /// // One group of two members: each event goes to one of them.
    /// let first = ring.reader(0, 0).unwrap();
    /// let second = ring.reader(0, 1).unwrap();
    /// assert!(matches!(ring.reader(0, 2), Err(RoleError::NoSuchMember { .. })));
    /// # drop((first, second));
    /// ```
    pub fn reader(&self, group: usize, member: usize) -> Result<Reader, RoleError> {
        if group >= self.inner.members.len() || member >= self.inner.members[group] {
            return Err(RoleError::NoSuchMember {
                ring: self.inner.name.clone(),
                group,
                member,
            });
        }
        let core = self.inner.core();
        let slot = &core.groups[group].members[member].pid;
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
        let batch = (self.inner.capacity as u64 / 4).clamp(1, 64);
        Ok(Reader {
            ring: self.clone(),
            group,
            member,
            batch,
            next: 0,
            end: 0,
            sole: self.inner.members[group] == 1 && self.inner.policy == Policy::Block,
            patience: None,
            small_events: false,
            finished: 0,
            unreleased: 0,
        })
    }
}

/// A member of a consumer group: reads its share of the events.
pub struct Reader {
    ring: Ring,
    /// The consumer group, < the ring's group count.
    group: usize,
    /// This member's index in its group; this process holds the member's `pid` word.
    member: usize,
    /// Events claimed at once, 1 ..= MAX_BATCH.
    batch: u64,
    /// Next event of the claimed range to hand out.
    next: u64,
    /// End of the claimed range.
    end: u64,
    /// The group has this one member and the ring the `block` policy: the member releases
    /// the events it finished as one range (one store of the group's cursor) when it has
    /// finished its claimed range, holds `RELEASE_BYTES` of them or sees the producer
    /// waiting for room, instead of one by one. (Under `drop` a slot held back would cost an event, so it releases each at once.)
    sole: bool,
    /// Sole member: events `finished - unreleased .. finished` are read (their borrows
    /// dropped) but not yet released; `finished <= next`.
    finished: u64,
    /// Sole member: how many finished events wait to be released, 0 ..= the claimed batch.
    unreleased: u64,
    /// Set by [`Reader::set_small_events`]: a sole member reads slot words and releases
    /// ranges.
    small_events: bool,
    /// How long to spin before sleeping, when on a core of its own
    /// ([`Reader::spin_on_own_core`]); `None`: the short fixed spin.
    patience: Option<Patience>,
}

/// A sole member releases what it has read once it holds back this many bytes of event
/// data, even inside its claimed range.
const RELEASE_BYTES: usize = 8 << 10;

/// The longest a reader on a core of its own spins before it sleeps, as the engine and
/// `daq-engine bench ring` set it ([`Reader::spin_on_own_core`]): events closer than half
/// of this (above 2 kHz) are caught spinning; an idle reader sleeps after this long.
pub const OWN_CORE_SPIN_MAX: Duration = Duration::from_millis(1);

/// The spin budget of a reader on a core of its own, adapted to the idle times it sees.
#[derive(Clone, Copy, Debug)]
struct Patience {
    /// Longest spin, ns (> 0).
    max_ns: u64,
    /// Running mean (weight 1/8) of the times from finding the ring empty to getting the
    /// next event, each at most `2 * max_ns`; starts at `max_ns / 2`.
    idle_mean_ns: u64,
    /// The longest of those times lately: a longer one raises it at once, and it falls by
    /// 1/256 with each event (to a third in about 280 events). The budget covers it, so that the late events of a jittery
    /// source (a spell now and then twice the usual) are caught spinning too, not only the
    /// mean: each one missed sleeps, and its wake-up costs tens of µs in a VM.
    idle_peak_ns: u64,
    /// When the ring was first found empty since the last event, `CLOCK_MONOTONIC` ns.
    idle_since: Option<u64>,
}

impl Patience {
    fn new(max_ns: u64) -> Patience {
        let max_ns = max_ns.max(1);
        Patience {
            max_ns,
            idle_mean_ns: max_ns / 2,
            idle_peak_ns: max_ns / 2,
            idle_since: None,
        }
    }

    /// How much longer to spin, the ring found empty at `now`: twice the longest recent
    /// idle time (at most `max_ns`) from the start of this idle spell, or nothing when events
    /// come further apart than `max_ns` on average (spinning would rarely catch one) or the
    /// spell has outlasted the budget.
    fn budget(&mut self, now: u64) -> u64 {
        let since = *self.idle_since.get_or_insert(now);
        if self.idle_mean_ns > self.max_ns {
            return 0;
        }
        let budget = (2 * self.idle_peak_ns.max(self.idle_mean_ns)).min(self.max_ns);
        budget.saturating_sub(now.saturating_sub(since))
    }

    /// An event was got at `now` (read only when the ring had been found empty); if the
    /// ring had been empty, the idle spell ends and counts.
    fn arrived(&mut self, now: impl FnOnce() -> u64) {
        if let Some(since) = self.idle_since.take() {
            // A spell longer than twice the longest spin counts as that: it says "long", and
            // a reader back from a pause (or the wait for the first event) spins again after
            // a few events instead of sleeping through dozens while one huge sample decays.
            let idle = now().saturating_sub(since).min(2 * self.max_ns);
            self.idle_mean_ns = self.idle_mean_ns - self.idle_mean_ns / 8 + idle / 8;
            self.idle_peak_ns = idle.max(self.idle_peak_ns - self.idle_peak_ns / 256);
        }
    }
}

impl Reader {
    /// The ring.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Counts `n` events this group read but could not use (an exporter whose output failed,
    /// or whose earlier process died before it wrote them) as released unread, so the books
    /// show them lost rather than delivered. At most what the group read from this ring and
    /// has not counted so; returns how many were counted.
    pub fn count_unused(&mut self, n: u64) -> u64 {
        self.flush();
        self.ring.count_unused(self.group, n)
    }

    /// Sets how many events a member claims at once (1 ..= 65535). Larger batches cost
    /// fewer shared-cursor updates; with several members, smaller ones share work finer.
    pub fn set_batch(&mut self, batch: u64) {
        self.batch = batch.clamp(1, core::MAX_BATCH);
    }

    /// The next event of this member's share, waiting at most `timeout`.
    ///
    /// ```
    /// # use daq_engine::dtype::Dtype;
    /// # use daq_engine::ring::{Policy, Ring, RingSpec};
    /// # use daq_engine::shm::{places, HugePages};
    /// # let spec = RingSpec {
    /// #     name: format!("doc-next-{}", std::process::id()),
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
    /// let writer = std::thread::spawn(move || {
    ///     for e in 0..3 {
    ///         let mut slot = producer.claim(Duration::from_secs(1)).unwrap();
    ///         slot.meta_mut().counter = e;
    ///         slot.publish();
    ///     }
    ///     producer.close();
    /// });
    /// let mut seen = Vec::new();
    /// loop {
    ///     match reader.next(Duration::from_secs(1)) {
    ///         Next::Event(ev) => seen.push(ev.meta().counter), // released when `ev` drops
    ///         Next::Idle => continue,
    ///         Next::End => break,
    ///     }
    /// }
    /// writer.join().unwrap();
    /// assert_eq!(seen, [0, 1, 2]);
    /// ```
    pub fn next(&mut self, timeout: Duration) -> Next<'_> {
        if self.next < self.end {
            return self.hand_out();
        }
        let core = self.ring.inner.core();
        // Read the clock only once the ring is found empty: a busy reader never does.
        let mut deadline = None;
        loop {
            match core.claim(self.group, self.member, self.batch, self.small_events) {
                Claim::Got(s, e) => {
                    self.next = s;
                    self.end = e;
                    if let Some(p) = &mut self.patience {
                        p.arrived(sync::now_ns);
                    }
                    return self.hand_out();
                }
                Claim::End => return Next::End,
                Claim::Empty => {
                    let now = sync::now_ns();
                    let until = *deadline.get_or_insert(now.saturating_add(nanos(timeout)));
                    if now >= until {
                        return Next::Idle;
                    }
                    let spin = self.patience.as_mut().map(|p| p.budget(now));
                    core.wait_data(self.group, until - now, spin, self.small_events);
                }
            }
        }
    }

    /// For a sole member of its group (on a `block` ring, for the range release) that
    /// moves many small events: learn that an event is published from its slot's own
    /// sequence word instead of the producer's write cursor, and release what it read as
    /// one range (at the end of its claimed range, at `RELEASE_BYTES`, when the producer
    /// sleeps, or at [`Reader::release_finished`]) instead of one by one. Each event read
    /// still moves a mark in the member's own line, so a reclaim after this process died
    /// counts what it read as read and only the rest of its range as abandoned, exactly as
    /// with one release per event. Off by default; the engine turns it on for every reader
    /// of a `block` buffer, `bench ring` for its readers.
    pub fn set_small_events(&mut self, on: bool) {
        self.small_events = on;
    }

    /// Lets this reader, on a core no other process of the run uses, spin rather than sleep
    /// when its ring is empty: for as long as it has been idle between events lately (twice
    /// the running mean of those idle times), at most `max`, measured in time rather than in
    /// loop turns. When events come further apart than `max` it sleeps at once, and after
    /// `max` of idleness it sleeps until woken, so an idle run uses no CPU. Without this (the
    /// default, right for readers that share a core) a reader spins only briefly.
    pub fn spin_on_own_core(&mut self, max: Duration) {
        self.patience = Some(Patience::new(nanos(max)));
    }

    /// The next event if one is published, without waiting.
    ///
    /// ```
    /// # use daq_engine::dtype::Dtype;
    /// # use daq_engine::ring::{Policy, Ring, RingSpec};
    /// # use daq_engine::shm::{places, HugePages};
    /// # let spec = RingSpec {
    /// #     name: format!("doc-try-next-{}", std::process::id()),
    /// #     dtype: Dtype::parse([("ch0", "f4")]).unwrap(),
    /// #     data_length: 16,
    /// #     slot_count: 8,
    /// #     policy: Policy::Block,
    /// #     groups: vec![1],
    /// # };
    /// # let ring = Ring::create(&places(HugePages::Off, None), &spec).unwrap();
    /// use daq_engine::ring::Next;
    ///
    /// let mut reader = ring.reader(0, 0).unwrap();
    /// assert!(matches!(reader.try_next(), Next::Idle)); // nothing published, no wait
    /// ```
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
        WaitToken::new(self.ring.inner.core(), self.group, self.next < self.end)
    }

    /// True when a claim would find something (an event or the end).
    pub fn ready(&self) -> bool {
        if self.next < self.end {
            return true;
        }
        self.ring
            .inner
            .core()
            .claimable(self.group, self.small_events)
    }

    fn hand_out(&mut self) -> Next<'_> {
        let e = self.next;
        self.next += 1;
        Next::Event(SlotRef { reader: self, e })
    }
}

impl Reader {
    /// Event `e`, handed out by this member, is read: release it, or (sole member) note it
    /// and release what it finished as one range once the claimed range is done.
    fn finish(&mut self, e: u64) {
        if !(self.sole && self.small_events) {
            self.ring.inner.core().release(self.group, self.member, e);
            return;
        }
        if self.unreleased > 0 && self.finished != e {
            // Out of order (an event kept past its borrow came back late): what was noted
            // first, so the cursor never covers an event still out.
            self.flush();
        }
        self.finished = e + 1;
        self.unreleased += 1;
        let inner = &*self.ring.inner;
        // The mark a reclaim goes by if this process dies before the range is released: a
        // store to this member's own line, which no other process reads while it lives.
        inner.core().groups[self.group].members[self.member]
            .finished
            .store(self.finished, Ordering::Relaxed);
        // `waiting` is written only when the producer goes to sleep: reading it costs no
        // transfer of a line per event. A producer that sleeps just after this look is woken
        // at the latest when the claimed range is done.
        let producer_waits = inner.core().ctl.space_wait.waiting.load(Ordering::Relaxed) != 0;
        // Large events: a few at a time, so the producer can go on writing while this
        // member reads (what batching saves is per event, not per byte).
        let held_bytes = self.unreleased as usize * inner.data_bytes();
        if self.finished >= self.end || producer_waits || held_bytes >= RELEASE_BYTES {
            self.flush();
        }
    }

    /// Releases at once the events this member has read but not yet released (a sole
    /// member releases what it read as one range when it has read its whole claimed range).
    /// Call it before reading the group's counters mid-range, e.g. to book what an output
    /// could not write ([`Reader::count_unused`] does).
    pub fn release_finished(&mut self) {
        self.flush();
    }

    /// Releases the finished events not yet released (sole member), as one range.
    fn flush(&mut self) {
        if self.unreleased > 0 {
            self.ring.inner.core().release_range(
                self.group,
                self.member,
                self.finished - self.unreleased,
                self.finished,
            );
            self.unreleased = 0;
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.flush();
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
                .abandoned
                .fetch_add(unread, Ordering::SeqCst);
        }
        let mem = &core.groups[self.group].members[self.member];
        let _ = mem
            .pid
            .compare_exchange(std::process::id(), 0, Ordering::SeqCst, Ordering::SeqCst);
    }
}

/// A futex a reader may sleep on, with the value seen before checking for data.
#[derive(Clone, Copy)]
pub struct WaitToken<'a> {
    /// The ring's data futex word.
    futex: &'a AtomicU32,
    /// Readers announced as (about to be) asleep on `futex`.
    waiting: &'a AtomicU32,
    /// `futex` as read when the token was taken, before anything was looked at.
    seen: u32,
    /// The ring, to look again for data once announced.
    core: Core<'a>,
    /// The reader's group.
    group: usize,
    /// The reader held claimed events not yet handed out when the token was taken.
    claimed: bool,
}

impl<'a> WaitToken<'a> {
    /// The token of a member of group `group` of the ring `core`; `claimed` says whether it
    /// holds claimed events not yet handed out.
    pub(super) fn new(core: Core<'a>, group: usize, claimed: bool) -> WaitToken<'a> {
        let dw = &core.ctl.data_wait;
        WaitToken {
            futex: &dw.futex,
            waiting: &dw.waiting,
            seen: dw.futex.load(Ordering::SeqCst),
            core,
            group,
            claimed,
        }
    }

    /// True when the token's reader would find something (as [`Reader::ready`]).
    fn ready(&self) -> bool {
        self.claimed || self.core.claimable(self.group, false)
    }
}

/// Sleeps until any of the readers whose tokens are given may have data, at most `timeout`.
/// Take the tokens, check [`Reader::ready`] on each, then call this: no wake-up is lost.
///
/// ```
/// use daq_engine::dtype::Dtype;
/// use daq_engine::ring::{wait_any, Next, Policy, Ring, RingSpec};
/// use daq_engine::shm::{places, HugePages};
/// use std::time::Duration;
///
/// let ring = |n: &str| {
///     let spec = RingSpec {
///         name: format!("doc-wait-any-{n}-{}", std::process::id()),
///         dtype: Dtype::parse([("ch0", "f4")]).unwrap(),
///         data_length: 16,
///         slot_count: 8,
///         policy: Policy::Block,
///         groups: vec![1],
///     };
///     Ring::create(&places(HugePages::Off, None), &spec).unwrap()
/// };
/// let (a, b) = (ring("a"), ring("b"));
/// let mut readers = [a.reader(0, 0).unwrap(), b.reader(0, 0).unwrap()];
/// let mut producer = b.producer().unwrap();
/// let writer =
///     std::thread::spawn(move || producer.claim(Duration::from_secs(1)).unwrap().publish());
/// // A merged reader: tokens first, then look, then sleep on both rings at once.
/// loop {
///     let tokens = [readers[0].wait_token(), readers[1].wait_token()];
///     if !readers.iter().any(|r| r.ready()) {
///         wait_any(&tokens, Duration::from_secs(1));
///     }
///     if let Next::Event(ev) = readers[1].try_next() {
///         assert_eq!(ev.index(), 0);
///         break;
///     }
/// }
/// // Joined, so that its producer lets go of ring b before the rings are dropped (and their
/// // files removed); a doctest that returned first left b's file in /dev/shm.
/// writer.join().unwrap();
/// ```
pub fn wait_any(tokens: &[WaitToken<'_>], timeout: Duration) {
    for t in tokens {
        t.waiting.fetch_add(1, Ordering::SeqCst);
    }
    sync::seqcst_order();
    // Look again now that we are announced (the Dekker pair with `Core::publish`, see
    // core.rs): an event published after the caller's `ready` check but before the
    // announcement found no sleeper and bumped no futex, so a sleep on `seen` would miss it
    // for the whole timeout.
    let ready = tokens.iter().any(|t| t.ready());
    const MAX: usize = 64;
    let n = tokens.len().min(MAX);
    let mut words: [(Option<&AtomicU32>, u32); MAX] = [(None, 0); MAX];
    for (w, t) in words.iter_mut().zip(tokens) {
        *w = (Some(t.futex), t.seen);
    }
    if !ready {
        sync::futex_wait_any(&words[..n], nanos(timeout));
    }
    for t in tokens {
        t.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An event borrowed in place from the ring. Released when dropped.
pub struct SlotRef<'r> {
    reader: &'r mut Reader,
    /// The event: claimed by this member and not released until this is dropped.
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
        self.finish(k.e);
    }
}

impl Drop for SlotRef<'_> {
    fn drop(&mut self) {
        self.reader.finish(self.e);
    }
}

#[cfg(all(test, not(daq_loom)))]
mod tests {
    use super::Patience;

    const US: u64 = 1_000;

    /// A reader's patience (spins of 1 ms at most) after `events` events `gap` apart, and
    /// the time of the last.
    fn fed(events: usize, gap: u64) -> (Patience, u64) {
        let mut p = Patience::new(1_000 * US);
        let mut t = 0;
        for _ in 0..events {
            p.budget(t);
            t += gap;
            p.arrived(|| t);
        }
        (p, t)
    }

    /// A reader that sees events 100 µs apart spins about twice that, and not longer than
    /// the spell it is in allows.
    #[test]
    fn the_spin_budget_follows_the_idle_times_seen() {
        let (mut p, t) = fed(1_024, 100 * US);
        let b = p.budget(t);
        assert!((180 * US..=220 * US).contains(&b), "budget {b} ns");
        // Later in the same idle spell: what is left of it.
        assert_eq!(p.budget(t + 150 * US), b - 150 * US);
        assert_eq!(p.budget(t + 400 * US), 0);
    }

    /// A source 100 µs apart with every 50th gap 300 µs (a producer held up now and then):
    /// the budget covers the long gaps too, so they are caught spinning, not slept through.
    /// With the mean alone (about 104 µs) the budget was 208 µs and each long gap slept.
    #[test]
    fn the_spin_budget_covers_a_jittery_source_late_events() {
        let mut p = Patience::new(1_000 * US);
        let mut t = 0;
        let mut slept = 0;
        for i in 0..2_000 {
            let gap = if i % 50 == 49 { 300 * US } else { 100 * US };
            let b = p.budget(t);
            if i >= 1_000 && b < gap {
                slept += 1;
            }
            t += gap;
            p.arrived(|| t);
        }
        assert_eq!(
            slept, 0,
            "of the last 1000 gaps, {slept} outlasted the spin"
        );
        // Still not the longest spin: about twice the long gap.
        assert!(p.budget(t) < 1_000 * US);
    }

    /// Events further apart than the longest spin: no spin at all. After an idle spell
    /// longer than the budget, none either, until events come close again.
    #[test]
    fn rare_events_and_idleness_mean_sleeping_at_once() {
        let (mut p, mut t) = fed(64, 5_000 * US);
        assert_eq!(p.budget(t), 0);
        // Back to 100 µs apart: spinning again within a few dozen events.
        let mut spins = 0;
        for _ in 0..64 {
            if p.budget(t) > 0 {
                spins += 1;
            }
            t += 100 * US;
            p.arrived(|| t);
        }
        assert!(spins > 16, "spun before {spins} of 64 events");
        assert!(p.budget(t) > 0);
        // An hour's pause, then events 100 µs apart again: spinning after a few.
        p.budget(t);
        t += 3_600_000_000 * US;
        p.arrived(|| t);
        let mut slept = 0;
        while p.budget(t) == 0 {
            slept += 1;
            t += 100 * US;
            p.arrived(|| t);
        }
        assert!(slept <= 8, "slept through {slept} events after a pause");
        // Idle from here on: the first look spins, after the budget none.
        assert!(p.budget(t) <= 1_000 * US);
        assert_eq!(p.budget(t + 1_000 * US), 0);
        assert_eq!(p.budget(t + 60_000_000 * US), 0);
    }
}
