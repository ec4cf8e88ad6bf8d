//! The hot path allocates nothing: with a counting global allocator, 100,000 rounds of
//! claim / publish / next / release / observer copy (and a merged reader's `ready` +
//! `wait_any`) after setup make exactly zero allocations, for a sole member and for a group
//! of two members.
//!
//! Each thread counts only its own allocations made while counting is switched on, so the
//! harness's threads and the other tests running in parallel do not disturb the figure.

use daq_engine::dtype::{Dtype, Metadata};
use daq_engine::ring::{wait_any, Next, Policy, Ring, RingSpec, WrongSize};
use daq_engine::shm::{places, HugePages};
use std::time::Duration;

mod alloc_count;
use alloc_count::allocations_in;

#[global_allocator]
static GLOBAL: alloc_count::Counting = alloc_count::Counting;

const ROUNDS: u64 = 100_000;

fn ring(tag: &str, groups: Vec<usize>) -> Ring {
    let spec = RingSpec {
        name: format!("ring-alloc-{tag}-{}", std::process::id()),
        dtype: Dtype::parse([("t", "u8"), ("adc", "i2")]).unwrap(),
        data_length: 32,
        slot_count: 64,
        policy: Policy::Block,
        groups,
    };
    Ring::create(&places(HugePages::Off, None), &spec).unwrap()
}

#[test]
fn the_counter_counts() {
    let n = allocations_in(|| {
        let v: Vec<u64> = Vec::with_capacity(10);
        std::hint::black_box(&v);
    });
    assert_eq!(
        n, 1,
        "the counting allocator must see a plain Vec allocation"
    );
}

#[test]
fn hot_path_of_a_sole_member_allocates_nothing() {
    let ring = ring("sole", vec![1]);
    let mut p = ring.producer().unwrap();
    let mut r = ring.reader(0, 0).unwrap();
    let mut obs = ring.observer();
    let mut copy = vec![0u8; ring.event_bytes()];
    let mut meta = Metadata::default();
    let mut short = vec![0u8; ring.event_bytes() - 1];
    assert_eq!(
        obs.latest(&mut short, &mut meta),
        Err(WrongSize {
            got: ring.event_bytes() - 1,
            want: ring.event_bytes()
        }),
        "a wrong-size copy buffer is an error, not 'nothing new'"
    );
    let mut sum = 0u64;
    let n = allocations_in(|| {
        for e in 0..ROUNDS {
            let mut slot = p.claim(Duration::from_secs(1)).unwrap();
            let (data, m) = slot.parts();
            data[..8].copy_from_slice(&e.to_le_bytes());
            m.counter = e as i64;
            slot.publish();
            assert_eq!(obs.latest(&mut copy, &mut meta), Ok(Some(e)));
            match r.next(Duration::from_secs(1)) {
                Next::Event(ev) => {
                    sum += u64::from_le_bytes(ev.data()[..8].try_into().unwrap());
                    assert_eq!(ev.meta().counter as u64, e);
                }
                _ => panic!("event {e} missing"),
            }
        }
    });
    assert_eq!(sum, ROUNDS * (ROUNDS - 1) / 2);
    assert_eq!(n, 0, "allocations on the hot path");
}

#[test]
fn hot_path_of_a_two_member_group_and_a_second_group_allocates_nothing() {
    let ring = ring("pair", vec![2, 1]);
    let mut p = ring.producer().unwrap();
    // Two members of group 0 (both in this process), taking turns; group 1 reads everything.
    let mut members = [ring.reader(0, 0).unwrap(), ring.reader(0, 1).unwrap()];
    for m in &mut members {
        m.set_batch(1);
    }
    let mut other = ring.reader(1, 0).unwrap();
    let mut obs = ring.observer();
    let mut copy = vec![0u8; ring.event_bytes()];
    let mut meta = Metadata::default();
    let mut counts = [0u64; 3];
    let n = allocations_in(|| {
        for e in 0..ROUNDS {
            let mut slot = p.claim(Duration::from_secs(1)).unwrap();
            slot.meta_mut().counter = e as i64;
            slot.publish();
            if e % 7 == 0 {
                assert_eq!(obs.latest(&mut copy, &mut meta), Ok(Some(e)));
            }
            let who = (e % 2) as usize;
            match members[who].next(Duration::from_secs(1)) {
                Next::Event(ev) => assert_eq!(ev.index(), e),
                _ => panic!("event {e} missing in group 0"),
            }
            counts[who] += 1;
            match other.next(Duration::from_secs(1)) {
                Next::Event(ev) => assert_eq!(ev.meta().counter as u64, e),
                _ => panic!("event {e} missing in group 1"),
            }
            counts[2] += 1;
        }
    });
    assert_eq!(counts, [ROUNDS / 2, ROUNDS / 2, ROUNDS]);
    assert_eq!(n, 0, "allocations on the hot path");
    let s = ring.stats();
    assert_eq!(s.groups[0].released, ROUNDS);
    assert_eq!(s.groups[1].released, ROUNDS);
}

/// A merged reader's idle path: tokens, `ready`, `wait_any` (with a tiny timeout, so it
/// returns), `try_next` on empty rings.
#[test]
fn merged_reader_idle_path_allocates_nothing() {
    let a = ring("mergeA", vec![1]);
    let b = ring("mergeB", vec![1]);
    let mut readers = [a.reader(0, 0).unwrap(), b.reader(0, 0).unwrap()];
    let mut woke = 0u64;
    let n = allocations_in(|| {
        for _ in 0..1_000 {
            let tokens = [readers[0].wait_token(), readers[1].wait_token()];
            if !readers.iter().any(|r| r.ready()) {
                wait_any(&tokens, Duration::from_micros(1));
                woke += 1;
            }
            for r in &mut readers {
                assert!(matches!(r.try_next(), Next::Idle));
            }
        }
    });
    assert_eq!(woke, 1_000);
    assert_eq!(n, 0, "allocations while a merged reader waits");
}
