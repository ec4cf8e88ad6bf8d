//! End of stream and dead time across processes. A closed stream is drained completely
//! before readers see the end; a reader asleep in `next` (or in `wait_any`) with a long or
//! unbounded timeout wakes when the stream is closed, by the producer or by the supervisor.
//! Under `block` the producer's wait for a slow consumer is booked as dead time, identically
//! in the ring's counters and in each slot's `blocked_ns`.
//!
//! Children are forked, attach by path, report through a shared anonymous mapping and leave
//! with `_exit`; the parent reaps every child (killing what is left on failure).

use daq_engine::ring::{wait_any, Next, Policy, Ring};
use nix::unistd::Pid;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

mod common;
use common::*;

// ------------------------------------------------------------------ helpers

/// Whether process `pid` is asleep (state S in /proc), e.g. on the ring's futex.
fn asleep(pid: Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with('S'))
        })
        .unwrap_or(false)
}

/// A child's part: reads member 0 of group 0 slowly to the end ([`read_slowly`], counting into
/// `rep`) once `first` has returned.
fn slow_reader<'a>(
    path: &'a Path,
    rep: &'a Report,
    per_event: Duration,
    first: impl FnOnce() + 'a,
) -> impl FnOnce() -> i32 + 'a {
    move || {
        let ring = attach(path);
        let mut r = ring.reader(0, 0).unwrap();
        first();
        read_slowly(&mut r, rep, per_event);
        0
    }
}

/// Publishes events from..to (counter = number) without closing.
fn publish(ring: &Ring, range: std::ops::Range<u64>) {
    let mut p = ring.producer().expect("producer role");
    for e in range {
        let mut slot = p.claim(Duration::from_secs(10)).expect("room");
        fill(slot.data_mut(), e);
        slot.meta_mut().counter = e as i64;
        slot.publish();
    }
}

/// Reads member `m` of group `g` to the end; records count/sum/mix, checks checksums and
/// order, and that the end stays the end.
fn drain(path: &Path, g: usize, m: usize, timeout: Duration, rep: &Report) -> i32 {
    let ring = attach(path);
    let mut r = ring.reader(g, m).expect("member role");
    let mut last = None;
    rep.other.store(1, Ordering::SeqCst); // about to wait
    loop {
        match take(&mut r, timeout, true, &mut last, rep, |_| {}) {
            Took::Event(_) => {}
            Took::Idle => return 3,
            Took::End => break,
        }
    }
    // The end is sticky.
    for _ in 0..3 {
        if !matches!(r.next(Duration::from_millis(1)), Next::End) {
            return 4;
        }
    }
    0
}

// ------------------------------------------------------------------ end of stream

/// The producer process publishes everything and closes before any reader starts; readers
/// (groups [2, 1]) still get every event, then the end.
#[test]
fn readers_drain_a_closed_stream_then_see_the_end() {
    const N: u64 = 3_000;
    let (ring, path, board, mut kids) =
        ring_with_board("drain", Policy::Block, 4096, vec![2, 1], 3);
    kids.spawn(|| {
        let ring = attach(&path);
        publish(&ring, 0..N);
        ring.producer().expect("producer role").close();
        0
    });
    assert_eq!(kids.wait_all_while(Duration::from_secs(30), || {}), vec![0]);
    let s = ring.stats();
    assert!(s.closed);
    assert_eq!(s.published, N);
    for (i, (g, m)) in [(0, 0), (0, 1), (1, 0)].into_iter().enumerate() {
        let (path, rep) = (&path, board.get(i));
        kids.spawn(move || drain(path, g, m, Duration::from_secs(20), rep));
    }
    assert_eq!(
        kids.wait_all_while(Duration::from_secs(30), || {}),
        vec![0; 3]
    );
    assert_eq!(add(board.get(0).tally(), board.get(1).tally()), over(0..N));
    assert_eq!(board.get(2).tally(), over(0..N));
    for i in 0..3 {
        assert_eq!(board.get(i).errors.load(Ordering::SeqCst), 0);
    }
}

/// Readers asleep in `next` with `timeout` wake on close and first drain what came before.
fn sleepers_wake_on_close(timeout: Duration, by_supervisor: bool) {
    let (ring, path, board, mut kids) = ring_with_board(
        &format!("wake{}{by_supervisor}", timeout.as_secs()),
        Policy::Block,
        64,
        vec![1, 2],
        3,
    );
    let pids: Vec<Pid> = [(0, 0), (1, 0), (1, 1)]
        .into_iter()
        .enumerate()
        .map(|(i, (g, m))| {
            let (path, rep) = (&path, board.get(i));
            kids.spawn(move || drain(path, g, m, timeout, rep))
        })
        .collect();
    // Some events first, so the sleepers also show they drain before the end.
    publish(&ring, 0..10);
    assert!(
        wait_for(Duration::from_secs(10), || ring
            .stats()
            .groups
            .iter()
            .all(|g| g.released == 10)),
        "readers did not take the first events"
    );
    assert!(
        wait_for(Duration::from_secs(10), || pids.iter().all(|&p| asleep(p))),
        "readers never went to sleep"
    );
    if by_supervisor {
        ring.close();
    } else {
        let mut p = ring.producer().unwrap();
        let mut slot = p.claim(Duration::from_secs(1)).unwrap();
        fill(slot.data_mut(), 10);
        slot.meta_mut().counter = 10;
        slot.publish();
        p.close();
    }
    let n = if by_supervisor { 10 } else { 11 };
    // Far less than the readers' timeout: they must have been woken.
    let codes = kids.wait_all_while(Duration::from_secs(20), || {});
    assert_eq!(codes, vec![0; 3], "readers end cleanly");
    assert_eq!(board.get(0).tally(), over(0..n));
    assert_eq!(add(board.get(1).tally(), board.get(2).tally()), over(0..n));
}

#[test]
fn reader_asleep_with_a_long_timeout_wakes_on_close() {
    sleepers_wake_on_close(Duration::from_secs(3600), false);
}

#[test]
fn reader_asleep_wakes_when_the_supervisor_closes() {
    sleepers_wake_on_close(Duration::from_secs(3600), true);
}

/// `Duration::MAX` is the natural "wait for ever".
#[test]
fn reader_asleep_without_timeout_wakes_on_close() {
    sleepers_wake_on_close(Duration::MAX, false);
}

/// A merged reader (two rings) asleep in `wait_any` without timeout wakes when either ring
/// gets data or closes.
#[test]
fn wait_any_without_timeout_wakes_on_data_and_on_close() {
    let a = ring("anyA", Policy::Block, 16, vec![1]);
    let b = ring("anyB", Policy::Block, 16, vec![1]);
    let (pa, pb) = (a.path().to_path_buf(), b.path().to_path_buf());
    let board = Board::new(1);
    let rep = board.get(0);
    let mut kids = Children::default();
    let pid = kids.spawn(|| {
        let (ra, rb) = (attach(&pa), attach(&pb));
        let mut readers = [ra.reader(0, 0).unwrap(), rb.reader(0, 0).unwrap()];
        let mut ended = [false, false];
        while !(ended[0] && ended[1]) {
            let tokens = [readers[0].wait_token(), readers[1].wait_token()];
            if !readers.iter().any(|r| r.ready()) {
                rep.other.fetch_add(1, Ordering::SeqCst); // going to sleep
                wait_any(&tokens, Duration::MAX);
            }
            for (i, r) in readers.iter_mut().enumerate() {
                match r.try_next() {
                    Next::Event(ev) => {
                        let c = ev.meta().counter as u64;
                        rep.count.fetch_add(1, Ordering::SeqCst);
                        rep.sum.fetch_add(c + 1000 * i as u64, Ordering::SeqCst);
                    }
                    Next::End => ended[i] = true,
                    Next::Idle => {}
                }
            }
        }
        0
    });
    // Asleep on both rings: data on B wakes it; then closing both ends it.
    assert!(wait_for(Duration::from_secs(10), || rep
        .other
        .load(Ordering::SeqCst)
        >= 1
        && asleep(pid)));
    publish(&b, 0..1);
    assert!(
        wait_for(Duration::from_secs(10), || rep.count.load(Ordering::SeqCst)
            == 1),
        "data on the second ring did not wake the merged reader"
    );
    assert_eq!(rep.sum.load(Ordering::SeqCst), 1000);
    assert!(wait_for(Duration::from_secs(10), || asleep(pid)));
    a.close();
    b.close();
    assert_eq!(kids.wait_all_while(Duration::from_secs(20), || {}), vec![0]);
}

// ------------------------------------------------------------------ dead time

/// A consumer process slower than the producer: the producer's waits are dead time, booked
/// identically in every slot's `blocked_ns` and in the ring's counter.
#[test]
fn blocked_producer_books_dead_time() {
    const N: u64 = 2_000;
    let (ring, path, board, mut kids) = ring_with_board("dead", Policy::Block, 8, vec![1], 1);
    kids.spawn(slow_reader(
        &path,
        board.get(0),
        Duration::from_micros(30),
        || {},
    ));
    let mut p = ring.producer().unwrap();
    let mut slot_ns = 0u64;
    let mut waited = 0u64;
    for e in 0..N {
        let mut slot = p.claim(Duration::from_secs(20)).expect("room within 20 s");
        slot_ns += slot.blocked_ns();
        waited += u64::from(slot.blocked_ns() > 0);
        fill(slot.data_mut(), e);
        slot.publish();
    }
    p.close();
    assert_eq!(kids.wait_all_while(Duration::from_secs(30), || {}), vec![0]);
    assert_eq!(board.get(0).count.load(Ordering::SeqCst), N);
    let s = ring.stats();
    assert!(slot_ns > 0, "a producer faster than its consumer must wait");
    assert!(waited > 0);
    assert_eq!(
        s.blocked_ns, slot_ns,
        "ring dead time == sum of the slots' waits"
    );
    eprintln!(
        "slow consumer: {waited} of {N} claims waited, {:.1} ms dead time",
        slot_ns as f64 / 1e6
    );
}

/// A ring with room for every event never makes its producer wait: no dead time at all;
/// with a fast consumer and a ring smaller than the run, whatever is booked is consistent.
#[test]
fn roomy_ring_books_no_dead_time() {
    const SLOTS: u64 = 4096;
    let (ring, path, board, mut kids) =
        ring_with_board("roomy", Policy::Block, SLOTS as usize, vec![1], 1);
    kids.spawn(|| drain(&path, 0, 0, Duration::from_secs(20), board.get(0)));
    let mut p = ring.producer().unwrap();
    // Publishes the events of `range`: the sum of the slots' waits.
    let mut publish_booking = |range: std::ops::Range<u64>| {
        let mut ns = 0u64;
        for e in range {
            let mut slot = p.claim(Duration::from_secs(20)).unwrap();
            ns += slot.blocked_ns();
            fill(slot.data_mut(), e);
            slot.meta_mut().counter = e as i64;
            slot.publish();
        }
        ns
    };
    let mut slot_ns = publish_booking(0..SLOTS);
    assert_eq!(slot_ns, 0, "never full, never waited");
    assert_eq!(ring.stats().blocked_ns, 0);
    // Four more rings' worth behind a fast consumer.
    slot_ns += publish_booking(SLOTS..5 * SLOTS);
    p.close();
    assert_eq!(kids.wait_all_while(Duration::from_secs(30), || {}), vec![0]);
    assert_eq!(board.get(0).tally(), over(0..5 * SLOTS));
    assert_eq!(ring.stats().blocked_ns, slot_ns);
    eprintln!(
        "fast consumer, {SLOTS}-slot ring, {} events: {:.3} ms dead time",
        5 * SLOTS,
        slot_ns as f64 / 1e6
    );
}

/// An Importer waits in short steps (to look at its stop flag in between): claims that time
/// out and `wait_room` calls are dead time of the event finally written, so the slots'
/// `blocked_ns` still add up to the ring's dead time exactly.
#[test]
fn dead_time_of_timed_out_claims_and_wait_room_reaches_the_event() {
    const N: u64 = 1_000;
    let (ring, path, board, mut kids) = ring_with_board("steps", Policy::Block, 8, vec![1], 1);
    // Held until the producer has seen both kinds of wait time out on a full ring: the
    // timeouts are then certain, not left to the scheduler.
    let held = || {
        while board.get(0).other.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_micros(50));
        }
    };
    kids.spawn(slow_reader(
        &path,
        board.get(0),
        Duration::from_micros(100),
        held,
    ));
    let mut p = ring.producer().unwrap();
    let (mut slot_ns, mut timeouts, mut short_waits) = (0u64, 0u64, 0u64);
    for e in 0..N {
        if e == 8 {
            // The ring (8 slots) is full and its consumer is held: both waits must time out.
            assert!(
                !p.wait_room(Duration::from_micros(20)),
                "a full ring has no room"
            );
            short_waits += 1;
            assert!(
                p.claim(Duration::from_micros(20)).is_err(),
                "a full ring has no slot"
            );
            timeouts += 1;
            board.get(0).other.store(1, Ordering::SeqCst);
        }
        if e % 2 == 0 {
            // Wait for room first, in 20 µs steps.
            while !p.wait_room(Duration::from_micros(20)) {
                short_waits += 1;
            }
        }
        let mut slot = loop {
            match p.claim(Duration::from_micros(20)) {
                Ok(slot) => break slot,
                Err(_) => timeouts += 1,
            }
        };
        slot_ns += slot.blocked_ns();
        fill(slot.data_mut(), e);
        slot.publish();
    }
    p.close();
    assert_eq!(kids.wait_all_while(Duration::from_secs(30), || {}), vec![0]);
    assert_eq!(board.get(0).count.load(Ordering::SeqCst), N);
    assert!(
        timeouts > 0 && short_waits > 0,
        "the consumer should have been slow enough to make both kinds of wait time out \
         ({timeouts} claim timeouts, {short_waits} wait_room timeouts)"
    );
    assert_eq!(
        ring.stats().blocked_ns,
        slot_ns,
        "every nanosecond waited belongs to an event's dead time"
    );
}
