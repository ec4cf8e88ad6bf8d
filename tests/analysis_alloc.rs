//! The per-event methods of the built-in functions allocate nothing: a counting global
//! allocator sees zero allocations over many calls after the first.

use daq_engine::analysis::bench::{waveform_shape, SlotEmit};
use daq_engine::analysis::csv::{CsvExport, Drain};
use daq_engine::analysis::histogram::HistogramExport;
use daq_engine::analysis::peaks::Pha;
use daq_engine::analysis::pulses::{Baseline, Downsample, PulseFinder, PulsePairs};
use daq_engine::analysis::simulate::SimulatePulses;
use daq_engine::analysis::trigger::{Coincidence, Prescale, Threshold};
use daq_engine::dtype::{Dtype, Metadata};
use daq_engine::worker::{
    BufferShape, BuildContext, EventMut, EventRef, Exporter, Filter, Importer, Processor,
};
use serde_json::json;

mod alloc_count;
use alloc_count::allocations_in;

#[global_allocator]
static GLOBAL: alloc_count::Counting = alloc_count::Counting;

/// Allocations of 50 calls of `f` on this thread after a first one.
fn allocations_during(mut f: impl FnMut()) -> u64 {
    f(); // the first call may touch lazily initialised state
    allocations_in(|| {
        for _ in 0..50 {
            f();
        }
    })
}

fn ctx(cfg: serde_json::Value, src: &[&BufferShape], sink: &[&BufferShape]) -> BuildContext {
    let mut c = BuildContext::for_test(
        "alloc",
        cfg,
        src.iter().map(|s| (*s).clone()).collect(),
        sink.iter().map(|s| (*s).clone()).collect(),
    );
    c.run_dir = std::env::temp_dir();
    c
}

#[test]
fn per_event_methods_do_not_allocate() {
    // The counter sees allocations at all (otherwise every assertion below is vacuous).
    assert_eq!(
        allocations_during(|| {
            std::hint::black_box(vec![1u8; 10]);
        }),
        50
    );
    let raw = waveform_shape();
    let bytes = raw.data_length * raw.dtype.record_size();
    let mut data = vec![0u8; bytes];
    let mut meta = Metadata::default();
    for gen in ["table", "ziggurat"] {
        let mut sim = SimulatePulses::build(&ctx(
            json!({"noise_generator": gen, "decay_fraction": 0.5, "coincidence": false,
                   "amplitude": "lines", "line_amplitudes": [0.2, 0.4]}),
            &[],
            &[&raw],
        ))
        .unwrap();
        let n = allocations_during(|| {
            let mut ev = EventMut {
                data: &mut data,
                meta: &mut meta,
                dtype: &raw.dtype,
            };
            sim.next(&mut ev).unwrap();
        });
        assert_eq!(n, 0, "simulate.pulses ({gen})");
    }
    let ev = EventRef {
        data: &data,
        meta,
        dtype: &raw.dtype,
    };

    let mut filters: Vec<(&str, Box<dyn Filter>)> = vec![
        (
            "threshold",
            Box::new(Threshold::build(&ctx(json!({"level": 0.05}), &[&raw], &[&raw])).unwrap()),
        ),
        (
            "coincidence",
            Box::new(
                Coincidence::build(&ctx(
                    json!({"level": 0.05, "min_channels": 1}),
                    &[&raw],
                    &[&raw],
                ))
                .unwrap(),
            ),
        ),
        (
            "prescale",
            Box::new(Prescale::build(&ctx(json!({"factor": 3}), &[&raw], &[&raw])).unwrap()),
        ),
    ];
    for (name, f) in &mut filters {
        assert_eq!(
            allocations_during(|| {
                f.select(&ev).unwrap();
            }),
            0,
            "{name}"
        );
    }

    let feat = BufferShape::parse(
        "feat",
        [
            ("channel", "u1"),
            ("time", "f8"),
            ("height", "f4"),
            ("delay", "f8"),
        ],
        1,
    )
    .unwrap();
    let pairs_feat = BufferShape::parse("pairs", [("delay", "f8"), ("height2", "f4")], 1).unwrap();
    let pulse_feat = BufferShape::parse(
        "pulses",
        [("channel", "u1"), ("time", "f8"), ("height", "f4")],
        1,
    )
    .unwrap();
    let half = BufferShape {
        data_length: raw.data_length / 2,
        ..raw.clone()
    };
    let peak_feat = BufferShape::parse(
        "peaks",
        [
            ("position", "i4"),
            ("peak_heights", "f8"),
            ("prominences", "f8"),
            ("widths", "f8"),
            ("left_ips", "f8"),
            ("plateau_sizes", "u2"),
        ],
        1,
    )
    .unwrap();
    let mut procs: Vec<(&str, Box<dyn Processor>, SlotEmit)> = vec![
        (
            "pulses",
            Box::new(
                PulseFinder::build(&ctx(json!({"threshold": 0.05}), &[&raw], &[&pulse_feat]))
                    .unwrap(),
            ),
            SlotEmit::new(&pulse_feat),
        ),
        (
            "pulse_pairs",
            Box::new(
                PulsePairs::build(&ctx(json!({"threshold": 0.05}), &[&raw], &[&pairs_feat]))
                    .unwrap(),
            ),
            SlotEmit::new(&pairs_feat),
        ),
        (
            "analyzers.pha",
            Box::new(
                Pha::build(&ctx(
                    json!({"height": 0.02, "prominence": [0.01, null], "width": 1,
                           "distance": 5, "threshold": [null, 10], "plateau_size": 1,
                           "all_peaks": true}),
                    &[&raw],
                    &[&peak_feat],
                ))
                .unwrap(),
            ),
            SlotEmit::new(&peak_feat),
        ),
        (
            "baseline",
            Box::new(Baseline::build(&ctx(json!({}), &[&raw], &[&raw])).unwrap()),
            SlotEmit::new(&raw),
        ),
        (
            "downsample",
            Box::new(Downsample::build(&ctx(json!({"factor": 2}), &[&raw], &[&half])).unwrap()),
            SlotEmit::new(&half),
        ),
    ];
    for (name, p, out) in &mut procs {
        assert_eq!(
            allocations_during(|| p.process(&ev, out).unwrap()),
            0,
            "{name}"
        );
    }

    let fev = vec![0u8; feat.dtype.record_size()];
    let fe = EventRef {
        data: &fev,
        meta,
        dtype: &feat.dtype,
    };
    let mut hist = HistogramExport::build(&ctx(
        json!({"bins": {"height": [0, 1, 100], "delay": [0, 1e-5, 100]}}),
        &[&feat],
        &[],
    ))
    .unwrap();
    assert_eq!(
        allocations_during(|| hist.consume(&fe).unwrap()),
        0,
        "histogram"
    );
    let mut csv = CsvExport::build(&ctx(
        json!({"filename": format!("alloc_test_{}", std::process::id())}),
        &[&feat],
        &[],
    ))
    .unwrap();
    assert_eq!(allocations_during(|| csv.consume(&fe).unwrap()), 0, "csv");
    std::fs::remove_file(csv.path()).ok();
    let mut drain = Drain::build(&ctx(json!({}), &[&feat], &[])).unwrap();
    assert_eq!(
        allocations_during(|| drain.consume(&fe).unwrap()),
        0,
        "drain"
    );
    #[cfg(feature = "kafka")]
    kafka_encoding_does_not_allocate();
}

/// export.kafka's per-event encoding allocates nothing: da00 writes each event into the
/// message it laid out once (also after the scales became known), ev44 reuses its builder.
/// Called from the one test of this file: the counter is global, a second test running
/// beside it would count the other's allocations.
#[cfg(feature = "kafka")]
fn kafka_encoding_does_not_allocate() {
    use daq_engine::kafka::wire::{Encoder, Ev44Fields, FieldScale, Format};
    let waves = Dtype::parse([("chA", "<f4"), ("chB", "<i2")]).unwrap();
    let data = vec![7u8; waves.record_size() * 4096];
    let mut da00 = Encoder::new(Format::Da00, &waves, 4096, "a/b/c", None).unwrap();
    let mut meta = Metadata::default();
    let mut encode = |enc: &mut Encoder, data: &[u8]| {
        meta.counter += 1;
        meta.timestamp += 0.001;
        std::hint::black_box(enc.encode(data, &meta).unwrap().len());
    };
    assert_eq!(allocations_during(|| encode(&mut da00, &data)), 0, "da00");
    da00.set_scales(
        &[FieldScale {
            field: "chB".into(),
            volts_per_count: 1e-3,
            offset_volts: 0.0,
        }],
        "scales_x.txt",
    );
    assert_eq!(
        allocations_during(|| encode(&mut da00, &data)),
        0,
        "da00, scaled"
    );
    let pulses = Dtype::parse([("channel", "<i4"), ("time", "<f8")]).unwrap();
    let fields = Ev44Fields::new(&pulses, "time", 1.0, Some("channel")).unwrap();
    let mut ev44 = Encoder::new(Format::Ev44, &pulses, 16, "a/b/d", Some(fields)).unwrap();
    let data = vec![1u8; pulses.record_size() * 16];
    assert_eq!(allocations_during(|| encode(&mut ev44, &data)), 0, "ev44");
}
