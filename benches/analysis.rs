//! Criterion benchmarks of the hot analysis functions on the reference event (4 channels ×
//! 4096 float32 samples, 64 KiB): the simulator (both noise generators), the threshold trigger
//! (worst case: no crossing, every sample inspected) and the pulse finder. Throughput is in
//! events; the 1 kHz goal is 1000 events/s. `daq-engine bench analysis` prints the same
//! figures from `daq_engine::analysis::bench::run`.
//!
//! `cargo bench -p daq-engine --bench analysis`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use daq_engine::analysis::bench::{
    prepared_events, pulse_features, pulse_finder, simulator, threshold, waveform_shape, SlotEmit,
};
use daq_engine::dtype::Metadata;
use daq_engine::worker::{EventMut, EventRef, Filter, Importer, Processor};
use std::hint::black_box;

fn analysis(c: &mut Criterion) {
    let shape = waveform_shape();
    let bytes = shape.data_length * shape.dtype.record_size();
    let mut g = c.benchmark_group("analysis_4x4096_f32");
    g.throughput(Throughput::Elements(1));
    let mut slot = vec![0u8; bytes];
    let mut meta = Metadata::default();
    for gen in ["table", "ziggurat"] {
        let mut sim = simulator(gen, 7).expect("valid simulator config");
        g.bench_function(format!("simulate.pulses/{gen}"), |b| {
            b.iter(|| {
                let mut ev = EventMut {
                    data: &mut slot,
                    meta: &mut meta,
                    dtype: &shape.dtype,
                };
                black_box(sim.next(&mut ev).expect("simulated"))
            })
        });
    }
    let events = prepared_events(7).expect("simulated");
    let ev = |i: usize| EventRef {
        data: &events[i % events.len()],
        meta: Metadata::default(),
        dtype: &shape.dtype,
    };
    let mut trig = threshold(serde_json::json!({"level": 100.0})).expect("valid trigger config");
    let mut i = 0;
    g.bench_function("filter.threshold/no_crossing", |b| {
        b.iter(|| {
            i += 1;
            black_box(trig.select(&ev(i)).expect("selected"))
        })
    });
    let mut finder = pulse_finder().expect("valid finder config");
    let mut out = SlotEmit::new(&pulse_features());
    g.bench_function("process.pulses", |b| {
        b.iter(|| {
            i += 1;
            finder.process(&ev(i), &mut out).expect("processed")
        })
    });
    g.finish();
}

criterion_group!(benches, analysis);
criterion_main!(benches);
