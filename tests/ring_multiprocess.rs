//! Rings across real processes over the real shared mapping: one producer process, two
//! consumer groups of two member processes each and one observer process, every event
//! carrying a checksum derived from its number. Every group must receive every event exactly
//! once (count, sum and a hash-sum of the indices per group), in publish order within each
//! member, and the observer must never return a torn copy. The same under `drop` with a slow
//! consumer: lost + published == attempted, exactly.
//!
//! Children are forked, attach to the ring by path, report through a shared anonymous
//! mapping and leave with `_exit`; the parent reaps every child (killing what is left on
//! failure) and its `Ring` handle removes the file.

mod common;
use common::*;

use daq_engine::dtype::Metadata;
use daq_engine::ring::{ClaimError, Policy};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Producer process body under `block`: publishes events 0..n (counter = number), closes.
fn produce_all(path: &Path, n: u64, rep: &Report) -> i32 {
    let ring = attach(path);
    let mut p = ring.producer().expect("producer role");
    for e in 0..n {
        let mut slot = match p.claim(Duration::from_secs(20)) {
            Ok(s) => s,
            Err(_) => {
                rep.errors.fetch_add(1, Ordering::SeqCst);
                return 2;
            }
        };
        let (data, meta) = slot.parts();
        fill(data, e);
        meta.counter = e as i64;
        meta.timestamp = e as f64;
        slot.publish();
        rep.book(e);
    }
    p.close();
    0
}

/// Reader process body: reads member `m` of group `g` until the end, checking every event
/// (checksum against its counter) and that its counters increase. `pause` is spent after
/// every event (a slow consumer).
fn consume_all(path: &Path, g: usize, m: usize, pause: Duration, rep: &Report) -> i32 {
    consume(path, (g, m), pause, false, rep)
}

/// As `consume_all`; `small`: the reader reads slot words and releases ranges
/// (`Reader::set_small_events`).
fn consume(path: &Path, (g, m): (usize, usize), pause: Duration, small: bool, rep: &Report) -> i32 {
    let ring = attach(path);
    let mut r = ring.reader(g, m).expect("member role");
    r.set_small_events(small);
    let mut last: Option<u64> = None;
    loop {
        match take(
            &mut r,
            Duration::from_secs(20),
            false,
            &mut last,
            rep,
            |_| {},
        ) {
            Took::Event(_) => spin_for(pause),
            Took::Idle => {
                rep.errors.fetch_add(1, Ordering::SeqCst);
                return 3;
            }
            Took::End => return 0,
        }
    }
}

/// Observer process body: copies the latest event until the stream is closed and the last
/// event was seen, checking each copy.
fn observe(path: &Path, rep: &Report) -> i32 {
    let ring = attach(path);
    let mut obs = ring.observer();
    let mut data = vec![0u8; ring.event_bytes()];
    let mut meta = Metadata::default();
    let mut last_index = None;
    loop {
        if let Ok(Some(i)) = obs.latest(&mut data, &mut meta) {
            rep.count.fetch_add(1, Ordering::Relaxed);
            if meta.counter as u64 != i || !valid(&data, i) {
                rep.other.fetch_add(1, Ordering::SeqCst);
            }
            if last_index.is_some_and(|l| i <= l) {
                rep.errors.fetch_add(1, Ordering::SeqCst);
            }
            last_index = Some(i);
        } else {
            let s = ring.stats();
            if s.closed && last_index.map_or(0, |l| l + 1) == s.published {
                return 0;
            }
        }
        std::thread::sleep(Duration::from_micros(20));
    }
}

/// Expected (count, sum, mix) of the event numbers 0..n.
fn expected(n: u64) -> Tally {
    over(0..n)
}

/// The members of group `g` saw no checksum or order error and got exactly the events of
/// `sent` between them.
fn group_got(g: usize, members: &[&Report], sent: Tally) {
    for m in members {
        assert_eq!(
            m.errors.load(Ordering::SeqCst),
            0,
            "group {g}: checksum/order"
        );
    }
    assert_eq!(
        totals(members),
        sent,
        "group {g} must receive exactly the published events"
    );
}

// ------------------------------------------------------------------ the tests

/// Starts the observer (report 5) and `produce` (report 0) beside the four readers already
/// started, and waits for all six children to exit 0.
fn observe_produce_and_wait(
    kids: &mut Children,
    path: &Path,
    board: &Board,
    produce: impl FnOnce(&Path, &Report) -> i32,
) {
    kids.spawn(|| observe(path, board.get(5)));
    kids.spawn(|| produce(path, board.get(0)));
    let codes = kids.wait_all(Duration::from_secs(120));
    assert_eq!(
        codes,
        vec![0; 6],
        "exit codes (readers, observer, producer)"
    );
}

/// One producer, groups [2, 2], one observer, `n` events through a 64-slot `block` ring.
fn broadcast_and_share(n: u64) {
    let t0 = Instant::now();
    let (ring, path, board, mut kids) =
        ring_with_board(&format!("block{n}"), Policy::Block, 64, vec![2, 2], 6);
    for (i, (g, m)) in [(0, 0), (0, 1), (1, 0), (1, 1)].into_iter().enumerate() {
        let (path, rep) = (&path, board.get(1 + i));
        kids.spawn(move || consume_all(path, g, m, Duration::ZERO, rep));
    }
    observe_produce_and_wait(&mut kids, &path, &board, |p, rep| produce_all(p, n, rep));

    let want = expected(n);
    assert_eq!(totals(&[board.get(0)]), want, "producer");
    for g in 0..2 {
        let members = [board.get(1 + 2 * g), board.get(2 + 2 * g)];
        for (m, rep) in members.iter().enumerate() {
            assert_eq!(
                rep.errors.load(Ordering::SeqCst),
                0,
                "group {g} member {m}: bad checksum or order"
            );
        }
        assert_eq!(totals(&members), want, "group {g}: count, sum, mix");
    }
    let obs = board.get(5);
    let copies = obs.count.load(Ordering::SeqCst);
    assert!(copies > 0, "the observer took no copy");
    assert_eq!(obs.other.load(Ordering::SeqCst), 0, "torn observer copies");
    assert_eq!(obs.errors.load(Ordering::SeqCst), 0, "observer went back");

    let s = ring.stats();
    assert_eq!(s.published, n);
    assert!(s.closed);
    assert_eq!(s.lost, 0);
    for g in &s.groups {
        assert_eq!((g.claimed, g.released, g.abandoned), (n, n, 0));
    }
    let shares: Vec<u64> = (1..5)
        .map(|i| board.get(i).count.load(Ordering::SeqCst))
        .collect();
    eprintln!(
        "{n} events, groups [2, 2] shares {shares:?}, observer copies {copies}, \
         producer dead time {} ms, {:.2} s",
        s.blocked_ns / 1_000_000,
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn two_groups_of_two_and_an_observer_200k() {
    broadcast_and_share(200_000);
}

#[test]
#[cfg_attr(debug_assertions, ignore = "run with --release")]
fn two_groups_of_two_and_an_observer_1m() {
    broadcast_and_share(1_000_000);
}

/// `drop` policy with a slow group: every attempt is either published or counted lost, and
/// each group gets exactly the published events.
#[test]
fn drop_policy_counts_every_event() {
    const ATTEMPTS: u64 = 100_000;
    let (ring, path, board, mut kids) = ring_with_board("drop", Policy::Drop, 16, vec![1, 2], 4);
    // Group 0: one slow member. Group 1: two fast members.
    kids.spawn(|| consume_all(&path, 0, 0, Duration::from_micros(20), board.get(1)));
    kids.spawn(|| consume_all(&path, 1, 0, Duration::ZERO, board.get(2)));
    kids.spawn(|| consume_all(&path, 1, 1, Duration::ZERO, board.get(3)));
    let prod = board.get(0);
    kids.spawn(|| {
        let ring = attach(&path);
        let mut p = ring.producer().expect("producer role");
        for a in 0..ATTEMPTS {
            match p.claim(Duration::ZERO) {
                Ok(mut slot) => {
                    let (data, meta) = slot.parts();
                    fill(data, a);
                    meta.counter = a as i64;
                    slot.publish();
                    prod.book(a);
                }
                Err(ClaimError::Full) => {
                    prod.other.fetch_add(1, Ordering::Relaxed);
                }
                Err(ClaimError::Timeout) => {
                    prod.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Pace the attempts a little, so that the fast group keeps up.
            if a % 64 == 0 {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
        p.close();
        0
    });
    let codes = kids.wait_all(Duration::from_secs(60));
    assert_eq!(codes, vec![0; 4]);

    let published = prod.count.load(Ordering::SeqCst);
    let refused = prod.other.load(Ordering::SeqCst);
    assert_eq!(
        prod.errors.load(Ordering::SeqCst),
        0,
        "drop never times out"
    );
    assert_eq!(published + refused, ATTEMPTS);
    let s = ring.stats();
    assert_eq!(s.published, published);
    assert_eq!(
        s.lost, refused,
        "stats().lost == the producer's count of Err(Full)"
    );
    assert!(
        refused > 0,
        "the slow group should have made the ring overflow"
    );
    assert!(
        published > 16,
        "more than one ring's worth should have got through"
    );
    let sent = totals(&[prod]);
    for (g, members) in [vec![board.get(1)], vec![board.get(2), board.get(3)]]
        .iter()
        .enumerate()
    {
        group_got(g, members, sent);
        assert_eq!(s.groups[g].released, published);
    }
    eprintln!("drop: {ATTEMPTS} attempts, {published} published, {refused} lost");
}

/// Producer process body with the batched API: attempts n events in batches of 1..=37
/// (cycling), publishing each batch at once; every third batch of more than one gives its
/// last slot back unpublished (that event is attempted again in the next batch). `block`
/// waits for room; under `drop` a refused claim counts its first event lost (in `other`).
fn produce_batched(path: &Path, n: u64, rep: &Report) -> i32 {
    let ring = attach(path);
    let mut p = ring.producer().expect("producer role");
    let (mut a, mut round) = (0u64, 0u64);
    while a < n {
        round += 1;
        let want = (1 + round % 37).min(n - a) as usize;
        let mut slots = match p.claim_batch(want, Duration::from_secs(20)) {
            Ok(s) => s,
            Err(ClaimError::Full) => {
                rep.other.fetch_add(1, Ordering::Relaxed);
                a += 1;
                continue;
            }
            Err(ClaimError::Timeout) => {
                rep.errors.fetch_add(1, Ordering::SeqCst);
                return 2;
            }
        };
        let k = slots.len();
        if k == 0 || k > want {
            rep.errors.fetch_add(1, Ordering::SeqCst);
            return 4;
        }
        // The event's number in the ring (what the observer checks against the counter).
        let first = slots.index(0);
        for i in 0..k {
            let e = first + i as u64;
            let (data, meta) = slots.parts(i);
            fill(data, e);
            meta.counter = e as i64;
        }
        let publish = if k > 1 && round % 3 == 0 { k - 1 } else { k };
        slots.publish_first(publish);
        for e in first..first + publish as u64 {
            rep.book(e);
        }
        a += publish as u64;
        if ring.policy() == Policy::Drop && round % 8 == 0 {
            // Pace a little, so that the fast readers keep up and only the slow one loses.
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    p.close();
    0
}

/// A batched producer, two sole-member groups (which learn of events from the slot words
/// and release whole claimed ranges) and a group of two, plus an observer: every attempt is
/// published or counted lost, and every group gets exactly the published events, in order.
fn batched_counts_every_event(policy: Policy, n: u64) {
    let (ring, path, board, mut kids) =
        ring_with_board(&format!("batch-{policy:?}"), policy, 64, vec![1, 1, 2], 6);
    // Under `drop`, group 0 is slow, so the ring overflows.
    let slow = match policy {
        Policy::Drop => Duration::from_micros(20),
        Policy::Block => Duration::ZERO,
    };
    kids.spawn(|| consume(&path, (0, 0), slow, true, board.get(1)));
    kids.spawn(|| consume(&path, (1, 0), Duration::ZERO, true, board.get(2)));
    kids.spawn(|| consume(&path, (2, 0), Duration::ZERO, true, board.get(3)));
    kids.spawn(|| consume(&path, (2, 1), Duration::ZERO, true, board.get(4)));
    observe_produce_and_wait(&mut kids, &path, &board, |p, rep| {
        produce_batched(p, n, rep)
    });

    let prod = board.get(0);
    assert_eq!(prod.errors.load(Ordering::SeqCst), 0, "producer");
    let (published, _, _) = totals(&[prod]);
    let refused = prod.other.load(Ordering::SeqCst);
    assert_eq!(published + refused, n, "every attempt published or refused");
    let s = ring.stats();
    assert_eq!((s.published, s.lost), (published, refused));
    assert!(s.closed);
    let sent = totals(&[prod]);
    for (g, members) in [
        vec![board.get(1)],
        vec![board.get(2)],
        vec![board.get(3), board.get(4)],
    ]
    .iter()
    .enumerate()
    {
        group_got(g, members, sent);
        let gs = &s.groups[g];
        assert_eq!(
            (gs.claimed, gs.released, gs.abandoned),
            (published, published, 0)
        );
    }
    let obs = board.get(5);
    assert_eq!(obs.other.load(Ordering::SeqCst), 0, "torn observer copies");
    assert_eq!(obs.errors.load(Ordering::SeqCst), 0, "observer went back");
    match policy {
        Policy::Block => assert_eq!(refused, 0),
        Policy::Drop => assert!(
            refused > 0,
            "the slow group should have made the ring overflow"
        ),
    }
    eprintln!("batched {policy:?}: {n} attempts, {published} published, {refused} lost");
}

#[test]
fn batched_publish_block_counts_every_event() {
    batched_counts_every_event(Policy::Block, 300_000);
}

#[test]
fn batched_publish_drop_counts_every_event() {
    batched_counts_every_event(Policy::Drop, 100_000);
}
