//! What the ring process tests share: children forked to play producer, readers and
//! observers, a report board in shared memory they count into, and checksummed events.
//!
//! Children are forked, attach by path, report through a shared anonymous mapping and leave
//! with `_exit`; the parent reaps every child (killing what is left on failure).

#![allow(dead_code)]

use daq_engine::dtype::Dtype;
use daq_engine::ring::{Next, Policy, Reader, Ring, RingSpec};
use daq_engine::shm::{places, HugePages};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

// ------------------------------------------------------------------ processes and reports

/// One child's counted facts, in shared memory.
#[derive(Default)]
#[repr(C)]
pub struct Report {
    /// Events received (readers), published (producer) or copies taken (observer).
    pub count: AtomicU64,
    /// Sum of the event numbers.
    pub sum: AtomicU64,
    /// Wrapping sum of mix(event number): catches a duplicate hiding behind a missing one.
    pub mix: AtomicU64,
    /// Checksum failures, order violations, unexpected timeouts.
    pub errors: AtomicU64,
    /// Producer: refused claims (`drop`). Observer: copies with a bad checksum.
    pub other: AtomicU64,
}

/// Reports of all children: an anonymous shared mapping inherited across fork.
pub struct Board {
    pub ptr: *mut Report,
    pub n: usize,
}

impl Board {
    pub fn new(n: usize) -> Board {
        let len = n * std::mem::size_of::<Report>();
        // SAFETY: a fresh anonymous shared mapping; no existing memory is touched.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED);
        Board { ptr: ptr.cast(), n }
    }

    pub fn get(&self, i: usize) -> &Report {
        assert!(i < self.n);
        // SAFETY: the mapping holds n zero-filled Reports (all-zero atomics are valid) and
        // lives as long as self.
        unsafe { &*self.ptr.add(i) }
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in new.
        unsafe { libc::munmap(self.ptr.cast(), self.n * std::mem::size_of::<Report>()) };
    }
}

/// Forked children, killed and reaped when dropped (also when the test fails).
#[derive(Default)]
pub struct Children(pub Vec<Pid>);

impl Children {
    /// Runs `f` in a forked child that leaves with `_exit(f())` (101 on panic).
    pub fn spawn(&mut self, f: impl FnOnce() -> i32) -> Pid {
        // SAFETY: the child runs only ring code and atomics (no lock another thread of the
        // harness could hold) and never returns into the harness: it leaves with _exit.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => {
                let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
                // SAFETY: ends the child without running the harness's destructors.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                self.0.push(child);
                child
            }
        }
    }

    /// Waits for every child to exit, at most `limit` in all; returns each one's exit code
    /// in spawn order. Panics (after Drop kills the rest) on a timeout.
    pub fn wait_all(&mut self, limit: Duration) -> Vec<i32> {
        self.wait_all_while(limit, || {})
    }

    /// As [`Children::wait_all`], calling `each` between polls (the supervisor's work).
    pub fn wait_all_while(&mut self, limit: Duration, mut each: impl FnMut()) -> Vec<i32> {
        let deadline = Instant::now() + limit;
        let mut codes = vec![None; self.0.len()];
        while codes.iter().any(Option::is_none) {
            for (i, &pid) in self.0.iter().enumerate() {
                if codes[i].is_some() {
                    continue;
                }
                match waitpid(pid, Some(WaitPidFlag::WNOHANG)).expect("waitpid") {
                    WaitStatus::StillAlive => {}
                    WaitStatus::Exited(_, c) => codes[i] = Some(c),
                    WaitStatus::Signaled(_, s, _) => codes[i] = Some(-(s as i32)),
                    _ => {}
                }
            }
            if Instant::now() > deadline {
                let stuck: Vec<usize> = (0..codes.len()).filter(|&i| codes[i].is_none()).collect();
                self.0 = stuck.iter().map(|&i| self.0[i]).collect();
                panic!("children {stuck:?} still running after {limit:?} (wedged ring?)");
            }
            each();
            std::thread::sleep(Duration::from_millis(1));
        }
        self.0.clear();
        codes.into_iter().map(Option::unwrap).collect()
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for &pid in &self.0 {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
    }
}

// ------------------------------------------------------------------ events with checksums

/// splitmix64: the payload and the index hash.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Records per event; each record is `a: u4, b: u4, check: u8`.
pub const RECORDS: usize = 4;

pub fn dtype() -> Dtype {
    Dtype::parse([("a", "u4"), ("b", "u4"), ("check", "u8")]).unwrap()
}

/// Fills an event's records from its number `n`.
pub fn fill(data: &mut [u8], n: u64) {
    for (r, rec) in data.chunks_exact_mut(16).enumerate() {
        let m = mix(n * RECORDS as u64 + r as u64);
        rec[0..4].copy_from_slice(&(m as u32).to_le_bytes());
        rec[4..8].copy_from_slice(&((m >> 32) as u32).to_le_bytes());
        rec[8..16].copy_from_slice(&(m.rotate_left(17) ^ n).to_le_bytes());
    }
}

/// Whether an event's records are exactly those of number `n`.
pub fn valid(data: &[u8], n: u64) -> bool {
    data.len() == RECORDS * 16
        && data.chunks_exact(16).enumerate().all(|(r, rec)| {
            let m = mix(n * RECORDS as u64 + r as u64);
            let a = u32::from_le_bytes(rec[0..4].try_into().unwrap());
            let b = u32::from_le_bytes(rec[4..8].try_into().unwrap());
            let c = u64::from_le_bytes(rec[8..16].try_into().unwrap());
            a == m as u32 && b == (m >> 32) as u32 && c == m.rotate_left(17) ^ n
        })
}

pub fn ring(tag: &str, policy: Policy, slot_count: usize, groups: Vec<usize>) -> Ring {
    let spec = RingSpec {
        name: format!("ring-{tag}-{}", std::process::id()),
        dtype: dtype(),
        data_length: RECORDS,
        slot_count,
        policy,
        groups,
    };
    Ring::create(&places(HugePages::Off, None), &spec).unwrap()
}

pub fn attach(path: &Path) -> Ring {
    Ring::attach(path, Some(&dtype()), Some(RECORDS)).expect("attach")
}

// ------------------------------------------------------------------ counting events

/// (count, wrapping sum, wrapping sum of mix) of a set of event numbers.
pub type Tally = (u64, u64, u64);

/// The tally of the event numbers in `range`.
pub fn over(range: std::ops::Range<u64>) -> Tally {
    range.fold((0, 0, 0), |t, e| {
        (t.0 + 1, t.1.wrapping_add(e), t.2.wrapping_add(mix(e)))
    })
}

/// Two tallies together.
pub fn add(a: Tally, b: Tally) -> Tally {
    (a.0 + b.0, a.1.wrapping_add(b.1), a.2.wrapping_add(b.2))
}

/// The tallies of `reps` together.
pub fn totals(reps: &[&Report]) -> Tally {
    reps.iter().fold((0, 0, 0), |t, r| add(t, r.tally()))
}

impl Report {
    /// What this child booked with [`Report::book`].
    pub fn tally(&self) -> Tally {
        (
            self.count.load(SeqCst),
            self.sum.load(SeqCst),
            self.mix.load(SeqCst),
        )
    }

    /// Books event number `c` once: count, sum and mix.
    pub fn book(&self, c: u64) {
        self.count.fetch_add(1, SeqCst);
        self.sum.fetch_add(c, SeqCst);
        self.mix.fetch_add(mix(c), SeqCst);
    }
}

/// What [`take`] found.
pub enum Took {
    /// The event of this number, checked, released and booked.
    Event(u64),
    /// Nothing within the timeout.
    Idle,
    /// The end of the stream.
    End,
}

/// Takes the next event with `r` (waiting at most `timeout`). An event that is not intact
/// (its records those of its counter), not after `last` or, with `index`, not at the index
/// of its counter is booked as an error in `rep`; `held` runs with its number while the
/// event is still held; once released it is booked in `rep` (a kill can never fall between
/// the two) and becomes `last`.
pub fn take(
    r: &mut Reader,
    timeout: Duration,
    index: bool,
    last: &mut Option<u64>,
    rep: &Report,
    held: impl FnOnce(u64),
) -> Took {
    match r.next(timeout) {
        Next::Event(ev) => {
            let c = ev.meta().counter as u64;
            if (index && c != ev.index()) || !valid(ev.data(), c) || last.is_some_and(|l| c <= l) {
                rep.errors.fetch_add(1, SeqCst);
            }
            *last = Some(c);
            held(c);
            drop(ev);
            rep.book(c);
            Took::Event(c)
        }
        Next::Idle => Took::Idle,
        Next::End => Took::End,
    }
}

/// Reads with `r` to the end (20 s at most for each event), counting each event in `count`
/// of `rep` and spinning `per_event` after it: a consumer slower than the producer.
pub fn read_slowly(r: &mut Reader, rep: &Report, per_event: Duration) {
    while let Next::Event(ev) = r.next(Duration::from_secs(20)) {
        drop(ev);
        rep.count.fetch_add(1, SeqCst);
        spin_for(per_event);
    }
}

/// Spins (no sleep, no syscall) for `d`.
pub fn spin_for(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// Whether `cond` comes to hold within `limit` (asked every millisecond).
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !cond() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

/// What a process test starts with: a fresh ring ([`ring`]), its path for the children to
/// attach by, a board of `reports` reports and no children yet.
pub fn ring_with_board(
    tag: &str,
    policy: Policy,
    slot_count: usize,
    groups: Vec<usize>,
    reports: usize,
) -> (Ring, PathBuf, Board, Children) {
    let ring = ring(tag, policy, slot_count, groups);
    let path = ring.path().to_path_buf();
    (ring, path, Board::new(reports), Children::default())
}
