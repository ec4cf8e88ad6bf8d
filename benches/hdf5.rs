//! Criterion: appending 64 KiB events (4 float32 channels x 4096 samples) to a run file,
//! uncompressed and with shuffle+deflate level 1, beside a plain `write` of the same bytes to
//! the same directory. Throughput is event bytes; each sample writes a fresh file of
//! `iters` events and fsyncs it, so the figure includes getting the data to the disk.
//! `daq-engine bench hdf5` (export::bench::run) prints the same comparison with h5py.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use daq_engine::dtype::Metadata;
use daq_engine::export::bench::{bench_file, EVENT_BYTES};
use daq_engine::export::hdf5::{Compression, RunStats};

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("daq-bench-hdf5-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn event() -> Vec<u8> {
    // Noise-like float32 values (xorshift, fixed seed) so deflate has real work to do.
    let mut s: u32 = 0x1234_5678;
    (0..EVENT_BYTES / 4)
        .flat_map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (100.0f32 + (s % 1000) as f32 * 0.004).to_le_bytes()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let dir = dir();
    let ev = event();
    let mut g = c.benchmark_group("hdf5_append_64KiB");
    g.throughput(Throughput::Bytes(EVENT_BYTES as u64));
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(3));
    let mut n = 0u64;
    for (name, compression) in [
        ("uncompressed", Compression::None),
        ("deflate1", Compression::Deflate { level: 1 }),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                n += 1;
                let path = dir.join(format!("{name}-{n}.h5"));
                let start = Instant::now();
                let (mut w, h) = bench_file(&path, compression).unwrap();
                for i in 0..iters {
                    let meta = Metadata {
                        counter: i as i64,
                        timestamp: 0.0,
                        deadtime: 0.0,
                    };
                    w.append(h, &ev, &meta).unwrap();
                }
                w.finish(RunStats::default()).unwrap();
                std::fs::File::open(&path).unwrap().sync_all().unwrap();
                let t = start.elapsed();
                std::fs::remove_file(&path).unwrap();
                t
            })
        });
    }
    g.bench_function("plain_write", |b| {
        b.iter_custom(|iters| {
            n += 1;
            let path = dir.join(format!("plain-{n}.bin"));
            let start = Instant::now();
            let mut f =
                std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path).unwrap());
            for _ in 0..iters {
                f.write_all(&ev).unwrap();
            }
            f.into_inner().unwrap().sync_all().unwrap();
            let t = start.elapsed();
            std::fs::remove_file(&path).unwrap();
            t
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
