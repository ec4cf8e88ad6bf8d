//! Criterion benchmarks of one ring inside one process: a producer thread (CPU 0) copies each
//! event from a source buffer into a slot and publishes it; a reader thread (CPU 1) reads
//! every 64-bit word of it and releases it. Beside each size, the memcpy of the same bytes on
//! one core. Event sizes 64 B, 4 KiB and 64 KiB; throughput in bytes of event data.
//!
//! The cross-process figures with latency and the iceoryx2 baseline come from
//! `daq_engine::ring_bench` (`cargo run --release --example bench_ring`).
//!
//! `cargo bench -p daq-engine --bench ring`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use daq_engine::dtype::{Dtype, Scalar};
use daq_engine::ring::{Next, Policy, Ring, RingSpec};
use daq_engine::ring_bench::{source_bytes, RingBenchOptions};
use daq_engine::shm::{places, HugePages};
use std::hint::black_box;
use std::time::{Duration, Instant};

const SIZES: [usize; 3] = [64, 4096, 65536];

fn pin(cpu: usize) {
    // Benchmarks on a machine with one CPU simply run unpinned.
    let _ = core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
}

fn source(bytes: usize) -> (Vec<u8>, usize) {
    let n = (source_bytes(bytes) / bytes).max(1);
    let v = (0..n * bytes).map(|i| (i % 251) as u8).collect();
    (v, n)
}

fn name(bytes: usize) -> String {
    if bytes >= 1024 {
        format!("{}KiB", bytes / 1024)
    } else {
        format!("{bytes}B")
    }
}

fn rings(c: &mut Criterion) {
    pin(0);
    let geometry = RingBenchOptions::default();
    let places = places(HugePages::Auto, None);
    let mut group = c.benchmark_group("ring");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for bytes in SIZES {
        let slots = geometry.slots(bytes);
        let spec = RingSpec {
            name: format!("daq-criterion-ring-{}-{bytes}", std::process::id()),
            dtype: Dtype::new([("word", Scalar::U64)]).expect("one u64 field is a valid dtype"),
            data_length: bytes / 8,
            slot_count: slots,
            policy: Policy::Block,
            groups: vec![1],
        };
        let ring = Ring::create(&places, &spec).expect("creating the benchmark ring");
        let (src, in_source) = source(bytes);
        group.throughput(Throughput::Bytes(bytes as u64));

        group.bench_function(
            BenchmarkId::new("producer_reader_threads", name(bytes)),
            |b| {
                b.iter_custom(|iters| {
                    let reading = ring.clone();
                    let reader = std::thread::spawn(move || {
                        pin(1);
                        let mut reader = reading.reader(0, 0).expect("reader role");
                        let mut sum = 0u64;
                        for _ in 0..iters {
                            match reader.next(Duration::from_secs(10)) {
                                Next::Event(ev) => {
                                    let (w, _) = ev.data().as_chunks::<8>();
                                    sum = w
                                        .iter()
                                        .fold(sum, |s, x| s.wrapping_add(u64::from_le_bytes(*x)));
                                }
                                _ => panic!("the producer stopped publishing"),
                            }
                        }
                        black_box(sum);
                    });
                    let mut producer = ring.producer().expect("producer role");
                    let t0 = Instant::now();
                    for i in 0..iters as usize {
                        let off = (i % in_source) * bytes;
                        let mut slot = producer
                            .claim(Duration::from_secs(10))
                            .expect("the reader stopped reading");
                        slot.data_mut().copy_from_slice(&src[off..off + bytes]);
                        slot.publish();
                    }
                    reader.join().expect("reader thread");
                    t0.elapsed()
                })
            },
        );

        let mut dest = vec![1u8; slots * bytes];
        group.bench_function(BenchmarkId::new("memcpy", name(bytes)), |b| {
            b.iter_custom(|iters| {
                let t0 = Instant::now();
                for i in 0..iters as usize {
                    let s = (i % in_source) * bytes;
                    let d = (i % slots) * bytes;
                    dest[d..d + bytes].copy_from_slice(&src[s..s + bytes]);
                    black_box(&mut dest);
                }
                t0.elapsed()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, rings);
criterion_main!(benches);
