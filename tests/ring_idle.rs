//! A reader on a core of its own (`Reader::spin_on_own_core`) spins while events come close
//! together, but an idle ring still puts it to sleep: measured as the CPU time its thread
//! uses over an idle second, not as wall-clock time.

mod common;
use common::*;

use daq_engine::ring::{Next, Policy, OWN_CORE_SPIN_MAX};
use std::time::{Duration, Instant};

/// CPU time this thread has used, ns.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write; CLOCK_THREAD_CPUTIME_ID needs nothing else.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[test]
fn a_spinning_reader_falls_asleep_when_the_ring_goes_idle() {
    const EVENTS: u64 = 2_000;
    let ring = ring("idle", Policy::Block, 64, vec![1]);
    let mut producer = ring.producer().unwrap();
    let reader_ring = ring.clone();
    let reader = std::thread::spawn(move || {
        let mut r = reader_ring.reader(0, 0).unwrap();
        r.spin_on_own_core(OWN_CORE_SPIN_MAX);
        let mut n = 0;
        while n < EVENTS {
            match r.next(Duration::from_secs(20)) {
                Next::Event(_) => n += 1,
                other => panic!("event {n}: {}", matches!(other, Next::End)),
            }
        }
        // Idle from here on (the producer publishes nothing more until told): the spin
        // budget (at most OWN_CORE_SPIN_MAX) is spent in the first moments, then it sleeps.
        let (cpu0, wall0) = (thread_cpu_ns(), Instant::now());
        let mut idle = 0;
        while wall0.elapsed() < Duration::from_millis(1_500) {
            match r.next(Duration::from_millis(50)) {
                Next::Idle => idle += 1,
                _ => panic!("nothing more was published"),
            }
        }
        let cpu = thread_cpu_ns() - cpu0;
        (cpu, wall0.elapsed(), idle)
    });
    // Events 20 µs apart (spun for, not slept), so the reader's idle times are short and
    // it does spin.
    for e in 0..EVENTS {
        let t = Instant::now();
        let mut slot = producer.claim(Duration::from_secs(20)).unwrap();
        fill(slot.data_mut(), e);
        slot.meta_mut().counter = e as i64;
        slot.publish();
        while t.elapsed() < Duration::from_micros(20) {
            std::hint::spin_loop();
        }
    }
    let (cpu, wall, idle) = reader.join().unwrap();
    producer.close();
    let share = cpu as f64 / wall.as_nanos() as f64;
    eprintln!(
        "idle reader: {:.3} ms CPU over {:.0} ms ({:.3} %), {idle} idle returns",
        cpu as f64 / 1e6,
        wall.as_secs_f64() * 1e3,
        share * 100.0
    );
    assert!(idle > 0);
    assert!(
        share < 0.01,
        "an idle reader used {:.2} % of a CPU",
        share * 100.0
    );
}
