//! Model checks of the cursor protocol with loom: every interleaving of producer, consumer
//! groups and group members over a tiny ring (two slots and three events, so the producer
//! waits for room and a slot is reused), with slot contents in loom cells so a read of
//! a slot the producer may be writing is reported as a data race.
//!
//! Run as the last step of `scripts/test.sh` does: `cargo rustc --lib --profile test
//! --features loom-models -- --cfg daq_loom` (the cfg for this crate alone, so the
//! dependencies of `cargo test` are used as they are), then the test binary it names with
//! `ring::loom_tests`. Or `RUSTFLAGS="--cfg daq_loom" cargo test --features loom-models --lib
//! ring::loom_tests` in a target directory of its own.

use super::core::{Claim, Control, Core, Group, SeqWords};
use super::reader::{wait_any, WaitToken};
use super::sync::{AtomicU64, Ordering};
use loom::cell::UnsafeCell;
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;

struct Model {
    ctl: Box<Control>,
    groups: Vec<Group>,
    done: Vec<AtomicU64>,
    cells: Vec<UnsafeCell<u64>>,
    /// Each slot's sequence word, written as the real producer writes `SlotHeader::seq`.
    seqs: Vec<AtomicU64>,
    slots: u64,
    /// Bumped by the producer after each publish and at close: readers with nothing to read
    /// block on it instead of spinning. (Two spinning readers let loom delay the producer
    /// for free at every yield, and the search never ends; the real ring sleeps on a futex
    /// the same way.)
    progress: (Mutex<u64>, Condvar),
}

// SAFETY: the cells are only accessed under the protocol being checked; loom reports any
// access that the protocol does not order.
unsafe impl Sync for Model {}
// SAFETY: as above.
unsafe impl Send for Model {}

impl Model {
    fn new(slots: u64, members: &[u32]) -> Arc<Model> {
        Arc::new(Model {
            ctl: Control::new_boxed(),
            groups: members.iter().map(|&m| Group::new(m)).collect(),
            done: (0..slots as usize * members.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            cells: (0..slots).map(|_| UnsafeCell::new(0)).collect(),
            seqs: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            slots,
            progress: (Mutex::new(0), Condvar::new()),
        })
    }

    fn core(&self) -> Core<'_> {
        Core {
            ctl: &self.ctl,
            groups: &self.groups,
            done: &self.done,
            seqs: SeqWords::of(&self.seqs),
            slots: self.slots,
            capacity: self.slots,
        }
    }

    /// Writes event `e`'s slot as the producer does: sequence word `2e + 1`, payload
    /// `e * 10 + 1`, word `2e + 2` (Release). Does not move the write cursor.
    fn write_slot(&self, e: u64) {
        let seq = &self.seqs[(e % self.slots) as usize];
        seq.store(2 * e + 1, Ordering::Relaxed);
        self.cells[(e % self.slots) as usize].with_mut(|p| {
            // SAFETY: loom checks that no reader accesses this cell concurrently.
            unsafe { *p = e * 10 + 1 }
        });
        seq.store(2 * e + 2, Ordering::Release);
    }

    /// Writes events 0..n, then closes.
    fn produce(&self, n: u64) {
        self.produce_batched(n, 1);
    }

    /// Writes events 0..n in batches of up to `batch` (as much as there is room for, at
    /// least one): each batch's slots, then one publish of the cursor. Then closes.
    fn produce_batched(&self, n: u64, batch: u64) {
        let core = self.core();
        let mut cached = 0;
        let mut w = 0;
        while w < n {
            while !core.has_room(w, &mut cached) {
                thread::yield_now();
            }
            let room = core.capacity - (w - cached);
            let end = (w + batch.min(room)).min(n);
            for e in w..end {
                self.write_slot(e);
            }
            w = end;
            core.publish(w);
            self.bump();
        }
        core.close();
        self.bump();
    }

    /// Writes events 0..n like `produce`, but waits for room as the real producer does,
    /// asleep on the futex in `wait_room`. Does not close.
    fn produce_sleeping(&self, n: u64) {
        let core = self.core();
        let mut cached = 0;
        for e in 0..n {
            assert!(core.wait_room(e, &mut cached, u64::MAX, || 0));
            self.write_slot(e);
            core.publish(e + 1);
        }
    }

    /// The payload of event `ev`'s slot (loom checks the read against the producer's write).
    fn cell(&self, ev: u64) -> u64 {
        self.cells[(ev % self.slots) as usize].with(|p| {
            // SAFETY: loom checks this read against the producer's write.
            unsafe { *p }
        })
    }

    /// Reclaims what member `m` of group `g`, dead as `pid`, holds until its record settles.
    fn settle(&self, g: usize, m: usize, pid: u32, alive: &dyn Fn(usize) -> bool) {
        while !self.core().reclaim(g, m, pid, alive).1 {
            thread::yield_now();
        }
    }

    /// Member `m` of group `g` reads the claimed events `s..e`, checks each and releases it.
    fn read(&self, g: usize, m: usize, (s, e): (u64, u64), seen: &mut Vec<u64>) {
        for ev in s..e {
            let v = self.cell(ev);
            assert_eq!(v, ev * 10 + 1, "group {g} member {m} read a wrong slot");
            seen.push(ev);
            self.core().release(g, m, ev);
        }
    }

    /// As `read`, but releases the claimed range as one, after reading all of it (the sole
    /// member's batched release).
    fn read_then_release(&self, g: usize, m: usize, (s, e): (u64, u64), seen: &mut Vec<u64>) {
        for ev in s..e {
            let v = self.cell(ev);
            assert_eq!(v, ev * 10 + 1, "group {g} member {m} read a wrong slot");
            seen.push(ev);
        }
        self.core().release_range(g, m, s, e);
    }

    /// As `consume`, releasing each claimed range at once.
    fn consume_batched(&self, g: usize, m: usize, batch: u64) -> Vec<u64> {
        let core = self.core();
        let mut seen = Vec::new();
        loop {
            let progress = self.seen();
            match core.claim(g, m, batch, true) {
                Claim::Got(s, e) => self.read_then_release(g, m, (s, e), &mut seen),
                Claim::Empty => self.wait_past(progress),
                Claim::End => return seen,
            }
        }
    }

    fn bump(&self) {
        let mut g = self.progress.0.lock().unwrap();
        *g += 1;
        self.progress.1.notify_all();
    }

    /// The producer's progress count (read before looking for data).
    fn seen(&self) -> u64 {
        *self.progress.0.lock().unwrap()
    }

    /// Blocks until the producer moved on from `seen`.
    fn wait_past(&self, seen: u64) {
        let mut g = self.progress.0.lock().unwrap();
        while *g == seen {
            g = self.progress.1.wait(g).unwrap();
        }
    }

    /// Member `m` of group `g` reads until the end; returns the events it saw, in order.
    fn consume(&self, g: usize, m: usize, batch: u64) -> Vec<u64> {
        let core = self.core();
        let mut seen = Vec::new();
        loop {
            let progress = self.seen();
            match core.claim(g, m, batch, true) {
                Claim::Got(s, e) => self.read(g, m, (s, e), &mut seen),
                Claim::Empty => self.wait_past(progress),
                Claim::End => return seen,
            }
        }
    }
}

/// Runs `f` on a new thread with its own handle on the model.
fn spawn<T: Send + 'static>(
    m: &Arc<Model>,
    f: impl FnOnce(&Model) -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    let m = m.clone();
    thread::spawn(move || f(&m))
}

/// Explores interleavings with at most 2 preemptions (bounded search, as in CHESS: most
/// real concurrency bugs need very few), long enough executions for the spin-then-yield
/// loops. Bound 3 runs for hours on these models.
fn model(f: impl Fn() + Sync + Send + 'static) {
    model_bounded(2, f)
}

fn model_bounded(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(preemptions);
    b.max_branches = 100_000;
    b.check(f);
}

#[test]
fn broadcast_to_two_groups() {
    model(|| {
        let m = Model::new(2, &[1, 1]);
        let p = spawn(&m, |m| m.produce(3));
        let c = spawn(&m, |m| m.consume(1, 0, 2));
        let a = m.consume(0, 0, 1);
        let b = c.join().unwrap();
        p.join().unwrap();
        assert_eq!(a, vec![0, 1, 2]);
        assert_eq!(b, vec![0, 1, 2]);
    });
}

#[test]
fn work_sharing_inside_a_group() {
    model(|| {
        let m = Model::new(2, &[2]);
        let p = spawn(&m, |m| m.produce(3));
        let c = spawn(&m, |m| m.consume(0, 1, 1));
        let a = m.consume(0, 0, 1);
        let b = c.join().unwrap();
        p.join().unwrap();
        // Each member's share is in order; together they see every event exactly once.
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert!(b.windows(2).all(|w| w[0] < w[1]));
        let mut all: Vec<u64> = a.into_iter().chain(b).collect();
        all.sort_unstable();
        assert_eq!(all, vec![0, 1, 2]);
        assert_eq!(m.groups[0].release.0.load(Ordering::SeqCst), 3);
    });
}

#[test]
fn reclaim_releases_a_dead_members_events_only() {
    model(|| {
        // Member 1 claims one event and "dies" holding it; the supervisor reclaims while
        // member 0 reads. The producer must be able to finish; member 0 must never lose a
        // slot it is reading to the producer.
        let m = Model::new(1, &[2]);
        let core = m.core();
        let p = spawn(&m, |m| m.produce(1));
        // The doomed member claims once, if anything is there.
        while !matches!(core.claim(0, 1, 1, true), Claim::Got(..)) {
            thread::yield_now();
        }
        let sup = spawn(&m, |m| m.settle(0, 1, 0, &|i| i == 0));
        let a = m.consume(0, 0, 1);
        sup.join().unwrap();
        p.join().unwrap();
        let abandoned = m.groups[0].info.0.abandoned.load(Ordering::SeqCst);
        assert_eq!(
            a.len() as u64 + abandoned,
            1,
            "every event read or abandoned once"
        );
        assert_eq!(abandoned, 1);
        assert_eq!(m.groups[0].release.0.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn takeover_racing_the_supervisors_reclaim_releases_only_the_dead_members_events() {
    model(|| {
        // Sole member 0 (pid 1) claims event 0 and dies holding it. A new process (pid 2)
        // takes its place while the supervisor reclaims: neither may release or un-announce
        // the newcomer's events (the producer would then overwrite a slot being read, a data
        // race loom reports, or the final cursor would be wrong).
        let m = Model::new(2, &[1]);
        let core = m.core();
        let pid = &m.groups[0].members[0].0.pid;
        pid.store(1, Ordering::SeqCst);
        let p = spawn(&m, |m| m.produce(3));
        while !matches!(core.claim(0, 0, 1, true), Claim::Got(..)) {
            thread::yield_now();
        }
        let sup = spawn(&m, |m| m.settle(0, 0, 1, &|_| false));
        // The newcomer settles the dead record itself, swaps its pid in and reads on.
        m.settle(0, 0, 1, &|_| false);
        assert!(pid
            .compare_exchange(1, 2, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok());
        let a = m.consume(0, 0, 1);
        sup.join().unwrap();
        p.join().unwrap();
        assert_eq!(
            a,
            vec![1, 2],
            "the newcomer reads every event after the dead one's"
        );
        assert_eq!(m.groups[0].info.0.abandoned.load(Ordering::SeqCst), 1);
        // Not asserted: the final cursor. loom 0.7.3 lets a compare-exchange or fetch_max
        // that read a stale 0 land after a later store of 3 by an unsynchronised thread
        // (a plain probe, CAS(0 -> 1) racing stores 2 and 3, ends at 1 under loom, which
        // the C++ model forbids), so it reports a cursor no real execution can reach.
    });
}

#[test]
fn reclaim_counts_what_a_dead_range_reader_read_as_read() {
    model(|| {
        // Sole member 0 (pid 1) releases in ranges: it claims up to two events, reads the
        // first (its `finished` mark says so) and dies before releasing any. The
        // supervisor's reclaim releases the range, the event read as read and the rest as
        // abandoned, while the producer waits for room; a successor reads on.
        let m = Model::new(2, &[1]);
        let core = m.core();
        let mem = &m.groups[0].members[0].0;
        mem.pid.store(1, Ordering::SeqCst);
        let p = spawn(&m, |m| m.produce(3));
        let (s, e) = loop {
            match core.claim(0, 0, 2, true) {
                Claim::Got(s, e) => break (s, e),
                _ => thread::yield_now(),
            }
        };
        assert_eq!((s, m.cell(s)), (0, 1));
        mem.finished.store(s + 1, Ordering::Relaxed);
        let sup = spawn(&m, |m| m.settle(0, 0, 1, &|_| false));
        sup.join().unwrap();
        assert!(mem
            .pid
            .compare_exchange(1, 2, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok());
        let a = m.consume(0, 0, 1);
        p.join().unwrap();
        let abandoned = m.groups[0].info.0.abandoned.load(Ordering::SeqCst);
        assert_eq!(abandoned, e - s - 1, "only the unread rest of the range");
        assert_eq!(
            a,
            (e..3).collect::<Vec<_>>(),
            "the successor reads on after it"
        );
    });
}

#[test]
fn detached_group_does_not_block_the_producer() {
    model(|| {
        let m = Model::new(2, &[1, 1]);
        let p = spawn(&m, |m| m.produce(4));
        m.core().detach(1);
        let a = m.consume(0, 0, 1);
        p.join().unwrap();
        assert_eq!(a, vec![0, 1, 2, 3]);
    });
}

/// The futex sleep: a producer that waits for room with `wait_room` and a reader that waits
/// for data with `wait_data`, over one slot, so each side sleeps in turn and only the other
/// can wake it. The model's futex has no timeout: a lost wake-up (the Dekker pairs of the
/// memory-ordering section in core.rs) leaves a side asleep for good, which loom reports as
/// a deadlock.
#[test]
fn sleepers_on_the_futex_are_always_woken() {
    model(|| {
        let m = Model::new(1, &[1]);
        let p = spawn(&m, |m| {
            m.produce_sleeping(2);
            m.core().close();
        });
        let core = m.core();
        let mut seen = Vec::new();
        loop {
            match core.claim(0, 0, 1, true) {
                Claim::Got(s, e) => m.read(0, 0, (s, e), &mut seen),
                Claim::Empty => core.wait_data(0, u64::MAX, None, true),
                Claim::End => break,
            }
        }
        p.join().unwrap();
        assert_eq!(seen, vec![0, 1]);
    });
}

/// A merged reader asleep in `wait_any` on two rings, as the engine's merged input does it:
/// tokens first, then a look at both rings, then the sleep. The producer of the second ring
/// (one slot) publishes, then waits for room that only the reader can make: if the reader
/// slept through the publish, both would sleep for good (a deadlock under loom).
#[test]
fn a_merged_reader_asleep_on_two_rings_is_always_woken() {
    model(|| {
        let rings = [Model::new(1, &[1]), Model::new(1, &[1])];
        let p = {
            let rings = rings.clone();
            thread::spawn(move || {
                rings[1].produce_sleeping(2);
                rings[1].core().close();
                rings[0].core().close();
            })
        };
        let mut seen = Vec::new();
        let mut ended = [false, false];
        while !(ended[0] && ended[1]) {
            // Only the rings that have not ended, as the engine's merged input does.
            let live: Vec<usize> = (0..2).filter(|&i| !ended[i]).collect();
            let tokens: Vec<WaitToken> = live
                .iter()
                .map(|&i| WaitToken::new(rings[i].core(), 0, false))
                .collect();
            if !live.iter().any(|&i| rings[i].core().claimable(0, true)) {
                wait_any(&tokens, std::time::Duration::MAX);
            }
            for &i in &live {
                match rings[i].core().claim(0, 0, 1, true) {
                    Claim::Got(s, e) => rings[i].read(0, 0, (s, e), &mut seen),
                    Claim::End => ended[i] = true,
                    Claim::Empty => {}
                }
            }
        }
        p.join().unwrap();
        assert_eq!(seen, vec![0, 1]);
    });
}

/// Batched publish against a sole reader that learns of events from the slot words alone
/// and releases each claimed range at once: two slots, five events in batches of up to two,
/// so every slot is reused twice (wrap-around) and a batch may straddle the ring's end. A
/// reader that took a slot word from an earlier lap as "published", or read a slot before
/// its word said so, reads a wrong payload or races the producer's write (loom reports it);
/// a release before the read ends lets the producer overwrite a slot being read.
#[test]
fn batch_publish_to_a_sole_reader_reading_the_slot_words() {
    model(|| {
        let m = Model::new(2, &[1]);
        let p = spawn(&m, |m| m.produce_batched(5, 2));
        let a = m.consume_batched(0, 0, 2);
        p.join().unwrap();
        assert_eq!(a, vec![0, 1, 2, 3, 4]);
        assert_eq!(m.groups[0].release.0.load(Ordering::SeqCst), 5);
    });
}

/// Batched publish to a sole reader (slot words) and to a shared group (write cursor) at
/// once: the slower group holds the producer back, and each sees every event once.
#[test]
fn batch_publish_to_a_sole_reader_and_a_shared_group() {
    model(|| {
        let m = Model::new(2, &[1, 2]);
        let p = spawn(&m, |m| m.produce_batched(3, 2));
        let c = spawn(&m, |m| m.consume(1, 0, 2));
        let a = m.consume_batched(0, 0, 2);
        let b = c.join().unwrap();
        p.join().unwrap();
        assert_eq!(a, vec![0, 1, 2]);
        assert_eq!(b, vec![0, 1, 2]);
    });
}

/// A sole reader asleep in `wait_data` while the producer publishes in batches and sleeps
/// in `wait_room` (one slot would make every batch one event, so two): the reader spins on
/// the slot word, then sleeps announced on the futex; a lost wake-up is a deadlock.
#[test]
fn a_sole_reader_asleep_is_woken_by_a_batch_publish() {
    model(|| {
        let m = Model::new(2, &[1]);
        let p = spawn(&m, |m| {
            let core = m.core();
            let mut cached = 0;
            let mut w = 0;
            while w < 4 {
                assert!(core.wait_room(w, &mut cached, u64::MAX, || 0));
                let end = (w + core.capacity - (w - cached)).min(4);
                for e in w..end {
                    m.write_slot(e);
                }
                w = end;
                core.publish(w);
            }
            core.close();
        });
        let core = m.core();
        let mut seen = Vec::new();
        loop {
            match core.claim(0, 0, 2, true) {
                Claim::Got(s, e) => m.read_then_release(0, 0, (s, e), &mut seen),
                Claim::Empty => core.wait_data(0, u64::MAX, None, true),
                Claim::End => break,
            }
        }
        p.join().unwrap();
        assert_eq!(seen, vec![0, 1, 2, 3]);
    });
}
