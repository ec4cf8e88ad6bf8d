//! The built-in functions one by one: declarations, config and shape checks before the run,
//! and exact counts of what each passes, writes or keeps.

use daq_engine::analysis::csv::{CsvExport, Drain};
use daq_engine::analysis::histogram::HistogramExport;
use daq_engine::analysis::oscilloscope::Oscilloscope;
use daq_engine::analysis::pulses::{
    find_pulses, Baseline, Downsample, FinderSettings, Pulse, PulseFinder,
};
use daq_engine::analysis::simulate::SimulatePulses;
use daq_engine::analysis::trace::FieldAccess;
use daq_engine::analysis::trigger::{Coincidence, Prescale, Threshold};
use daq_engine::analysis::{functions, EventCollector};
use daq_engine::dtype::Metadata;
use daq_engine::worker::{
    BufferShape, EventMut, EventRef, Exporter, Filter, Importer, Observer, Processor, Produced,
    SinkMask,
};
use proptest::prelude::*;
use serde_json::{json, Value};

mod analysis_common;
use analysis_common::{ctx, ctx_in, next_of, pulse_finder, shape, simulator};

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("daq_analysis_{tag}_{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `n` events from a simulator with config `cfg` into `raw`.
fn simulate(cfg: Value, raw: &BufferShape, n: usize) -> Vec<(Metadata, Vec<u8>)> {
    events_of(&mut simulator("sim", cfg, raw), raw, n)
}

/// The next `n` events of `sim` into `raw`.
fn events_of(sim: &mut SimulatePulses, raw: &BufferShape, n: usize) -> Vec<(Metadata, Vec<u8>)> {
    let size = raw.data_length * raw.dtype.record_size();
    (0..n)
        .map(|i| {
            let mut data = vec![0u8; size];
            let mut meta = Metadata {
                counter: i as i64,
                ..Metadata::default()
            };
            assert_eq!(
                next_of(sim, &mut data, &mut meta, &raw.dtype),
                Produced::Event
            );
            (meta, data)
        })
        .collect()
}

fn as_ref<'a>(e: &'a (Metadata, Vec<u8>), s: &'a BufferShape) -> EventRef<'a> {
    EventRef {
        data: &e.1,
        meta: e.0,
        dtype: &s.dtype,
    }
}

#[test]
fn every_function_is_declared_once_with_documented_keys() {
    let f = functions();
    let s: Vec<_> = f.iter().map(|f| f.spec).collect();
    // with mimoCoRB2's analyzers.pha and exporters.histogram, and process.coincidence
    assert_eq!(s.len(), 16);
    for (spec, func) in s.iter().zip(&f) {
        assert_eq!(spec.template, func.build.template(), "{}", spec.name);
        assert_eq!(s.iter().filter(|x| x.name == spec.name).count(), 1);
        for k in spec.keys {
            assert!(!k.doc.is_empty(), "{}.{}", spec.name, k.name);
            assert_eq!(k.required, k.default.is_none(), "{}.{}", spec.name, k.name);
        }
    }
}

#[test]
fn bad_configs_and_shapes_fail_at_build_naming_the_problem() {
    let raw = shape("raw", &[("ch0", "f4"), ("ch1", "f4")], 100);
    let other = shape("other", &[("ch0", "f4")], 100);
    let feat = shape("feat", &[("height", "f4"), ("colour", "u1")], 1);
    let err = |r: Result<(), String>| r.unwrap_err();
    let e = err(Threshold::build(&ctx("t", json!({}), &[&raw], &[&raw]))
        .map(|_| ())
        .map_err(|e| e.to_string()));
    assert!(
        e.contains("'t'") && e.contains("'level'") && e.contains("required"),
        "{e}"
    );
    let e = err(Threshold::build(&ctx(
        "t",
        json!({"level": 1, "channels": ["ch7"]}),
        &[&raw],
        &[&raw],
    ))
    .map(|_| ())
    .map_err(|e| e.to_string()));
    assert!(e.contains("ch7") && e.contains("ch0, ch1"), "{e}");
    let e = err(Threshold::build(&ctx(
        "t",
        json!({"level": 1, "edge": "up"}),
        &[&raw],
        &[&raw],
    ))
    .map(|_| ())
    .map_err(|e| e.to_string()));
    assert!(e.contains("rising, falling"), "{e}");
    let e = err(
        Threshold::build(&ctx("t", json!({"level": 1}), &[&raw], &[&other]))
            .map(|_| ())
            .map_err(|e| e.to_string()),
    );
    assert!(e.contains("same data_dtype"), "{e}");
    let e = err(
        PulseFinder::build(&ctx("p", json!({"threshold": 0.1}), &[&raw], &[&feat]))
            .map(|_| ())
            .map_err(|e| e.to_string()),
    );
    assert!(e.contains("colour") && e.contains("height"), "{e}");
    let e = err(HistogramExport::build(&ctx(
        "h",
        json!({"bins": {"width": [0, 1, 10]}}),
        &[&feat],
        &[],
    ))
    .map(|_| ())
    .map_err(|e| e.to_string()));
    assert!(e.contains("width") && e.contains("'bins'"), "{e}");
    let e = err(HistogramExport::build(&ctx(
        "h",
        json!({"bins": {"height": [1, 0, 10]}}),
        &[&feat],
        &[],
    ))
    .map(|_| ())
    .map_err(|e| e.to_string()));
    assert!(e.contains("min < max"), "{e}");
    let e = err(
        SimulatePulses::build(&ctx("s", json!({"pretrigger_samples": 100}), &[], &[&raw]))
            .map(|_| ())
            .map_err(|e| e.to_string()),
    );
    assert!(
        e.contains("pretrigger_samples") && e.contains("100 samples"),
        "{e}"
    );
    let e = err(SimulatePulses::build(&ctx(
        "s",
        json!({"amplitude": "lines", "line_amplitudes": [0.1, 0.2], "line_weights": [1], "pretrigger_samples": 10}),
        &[],
        &[&raw],
    ))
    .map(|_| ())
    .map_err(|e| e.to_string()));
    assert!(e.contains("line_weights"), "{e}");
    let half = shape("half", &[("ch0", "f4"), ("ch1", "f4")], 49);
    let e = err(
        Downsample::build(&ctx("d", json!({"factor": 2}), &[&raw], &[&half]))
            .map(|_| ())
            .map_err(|e| e.to_string()),
    );
    assert!(e.contains("100 / 2 = 50"), "{e}");
}

/// A simulator started again after its process died (`restart: on-failure`) drew the
/// same events as its first life, from the seed: the tester found events 1156–2311 of a run
/// byte for byte equal to events 0–1155. It goes on with events of its own now (still the
/// same for the same seed and restart point), and `n_events` counts both lives.
#[test]
fn a_restarted_simulator_draws_new_events_and_counts_its_earlier_ones() {
    let raw = shape("raw", &[("a", "f4")], 64);
    let cfg = json!({"seed": 3, "pretrigger_samples": 10, "n_events": 7});
    let first = simulate(cfg.clone(), &raw, 5);
    let again = |taken| {
        let mut sim = simulator("sim", cfg.clone(), &raw);
        sim.restarted(taken);
        sim
    };
    let mut second = again(5);
    let later = events_of(&mut second, &raw, 2);
    for (x, y) in first.iter().zip(&later) {
        assert_ne!(x.1, y.1, "a restarted simulator repeats its first life");
    }
    let data = |e: Vec<(Metadata, Vec<u8>)>| e.into_iter().map(|(_, d)| d).collect::<Vec<_>>();
    assert_eq!(
        data(later),
        data(events_of(&mut again(5), &raw, 2)),
        "same seed and restart point, same events"
    );
    let mut buf = vec![0u8; 64 * 4];
    let mut meta = Metadata::default();
    assert_eq!(
        next_of(&mut second, &mut buf, &mut meta, &raw.dtype),
        Produced::End,
        "n_events counts the events of the first life"
    );
}

#[test]
fn same_seed_same_samples_and_n_events_ends() {
    let raw = shape("raw", &[("a", "f4"), ("b", "i2")], 300);
    let cfg = json!({"seed": 9, "decay_fraction": 0.5, "pretrigger_samples": 30, "n_events": 3});
    let a = simulate(cfg.clone(), &raw, 3);
    let b = simulate(cfg, &raw, 3);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.1, y.1);
    }
    let c = simulate(json!({"seed": 10, "pretrigger_samples": 30}), &raw, 1);
    assert_ne!(a[0].1, c[0].1);
    // Timestamps advance (exponential gaps at 1 kHz).
    assert!(a[1].0.timestamp > a[0].0.timestamp && a[2].0.timestamp > a[1].0.timestamp);
    let mut sim = simulator("s", json!({"n_events": 2, "pretrigger_samples": 30}), &raw);
    let mut data = vec![0u8; 300 * 6];
    let mut meta = Metadata::default();
    let mut results = vec![];
    for _ in 0..4 {
        let mut ev = EventMut {
            data: &mut data,
            meta: &mut meta,
            dtype: &raw.dtype,
        };
        results.push(sim.next(&mut ev).unwrap());
    }
    assert_eq!(
        results,
        [
            Produced::Event,
            Produced::Event,
            Produced::End,
            Produced::End
        ]
    );
}

#[test]
fn threshold_coincidence_and_prescale_pass_exactly_what_they_should() {
    let raw = shape("raw", &[("ch0", "f4"), ("ch1", "f4"), ("ch2", "f4")], 400);
    // Independent channels: exactly one channel per event has the pulse.
    let single = simulate(
        json!({"coincidence": false, "pretrigger_samples": 50, "seed": 5}),
        &raw,
        60,
    );
    let all = simulate(
        json!({"coincidence": true, "pretrigger_samples": 50, "seed": 5}),
        &raw,
        20,
    );
    let mut any = Threshold::build(&ctx("t", json!({"level": 0.1}), &[&raw], &[&raw])).unwrap();
    let mut only0 = Threshold::build(&ctx(
        "t",
        json!({"level": 0.1, "channels": "ch0"}),
        &[&raw],
        &[&raw],
    ))
    .unwrap();
    let mut late = Threshold::build(&ctx(
        "t",
        json!({"level": 0.1, "pretrigger_samples": 60}),
        &[&raw],
        &[&raw],
    ))
    .unwrap();
    let mut falling = Threshold::build(&ctx(
        "t",
        json!({"level": -0.1, "edge": "falling"}),
        &[&raw],
        &[&raw],
    ))
    .unwrap();
    let mut coinc = Coincidence::build(&ctx(
        "c",
        json!({"level": 0.1, "min_channels": 2, "window": 3}),
        &[&raw],
        &[&raw],
    ))
    .unwrap();
    let count = |f: &mut dyn Filter, evs: &[(Metadata, Vec<u8>)]| {
        evs.iter()
            .filter(|e| f.select(&as_ref(e, &raw)).unwrap() == SinkMask::ALL)
            .count()
    };
    assert_eq!(count(&mut any, &single), 60);
    // ch0 carries the pulse in some of the events, never all of them.
    let n0 = count(&mut only0, &single);
    assert!(n0 > 5 && n0 < 40, "{n0}");
    // Pulses cross at sample 51 or 52 (rise of 2.5 samples): before 60, so none count.
    assert_eq!(count(&mut late, &single), 0);
    assert_eq!(count(&mut falling, &single), 0);
    assert_eq!(count(&mut coinc, &single), 0);
    assert_eq!(count(&mut coinc, &all), 20);
    let mut pre = Prescale::build(&ctx("p", json!({"factor": 3}), &[&raw], &[&raw])).unwrap();
    let kept: Vec<usize> = (0..10)
        .filter(|i| pre.select(&as_ref(&single[*i], &raw)).unwrap() == SinkMask::ALL)
        .collect();
    assert_eq!(kept, [0, 3, 6, 9]);
    assert!(Prescale::build(&ctx("p", json!({"factor": 0}), &[&raw], &[&raw])).is_err());
}

#[test]
fn baseline_and_downsample_give_exact_values() {
    let raw = shape("raw", &[("a", "f4"), ("n", "i2")], 8);
    let mut data = vec![0u8; 8 * 6];
    let a = FieldAccess::new(&raw, "a").unwrap();
    let n = FieldAccess::new(&raw, "n").unwrap();
    a.store(&mut data, &[1.0, 3.0, 5.0, 7.0, 9.0, 11.0, 13.0, 15.0]);
    n.store(
        &mut data,
        &[10.0, 12.0, 10.0, 12.0, 100.0, 10.0, 10.0, 10.0],
    );
    let ev = EventRef {
        data: &data,
        meta: Metadata {
            counter: 7,
            ..Default::default()
        },
        dtype: &raw.dtype,
    };
    let mut base =
        Baseline::build(&ctx("b", json!({"baseline_samples": 4}), &[&raw], &[&raw])).unwrap();
    let mut out = EventCollector::new(std::slice::from_ref(&raw));
    out.input_meta = ev.meta;
    base.process(&ev, &mut out).unwrap();
    let (m, d) = &out.events[0][0];
    assert_eq!(m.counter, 7);
    let mut v = [0f32; 8];
    a.load(d, &mut v);
    assert_eq!(v, [-3.0, -1.0, 1.0, 3.0, 5.0, 7.0, 9.0, 11.0]);
    n.load(d, &mut v);
    assert_eq!(v, [-1.0, 1.0, -1.0, 1.0, 89.0, -1.0, -1.0, -1.0]);

    let quarter = shape("q", &[("a", "f4"), ("n", "i2")], 2);
    for (mode, want_a, want_n) in [
        ("average", [4.0, 12.0], [11.0, 33.0]),
        ("decimate", [1.0, 9.0], [10.0, 100.0]),
    ] {
        let mut ds = Downsample::build(&ctx(
            "d",
            json!({"factor": 4, "mode": mode}),
            &[&raw],
            &[&quarter],
        ))
        .unwrap();
        let mut out = EventCollector::new(std::slice::from_ref(&quarter));
        ds.process(&ev, &mut out).unwrap();
        let qa = FieldAccess::new(&quarter, "a").unwrap();
        let qn = FieldAccess::new(&quarter, "n").unwrap();
        let mut v = [0f32; 2];
        qa.load(&out.events[0][0].1, &mut v);
        assert_eq!(v, want_a, "{mode}");
        qn.load(&out.events[0][0].1, &mut v);
        // (10+12+10+12)/4 = 11, (100+10+10+10)/4 = 32.5 → rounds to 33 in int16.
        assert_eq!(v, want_n, "{mode}");
    }
}

#[test]
fn pulse_finder_emits_one_record_per_pulse_with_the_event_counter() {
    let raw = shape("raw", &[("ch0", "f4"), ("ch1", "f4")], 1000);
    let feat = shape(
        "feat",
        &[
            ("channel", "u1"),
            ("pulse", "u2"),
            ("index", "i4"),
            ("height", "f4"),
        ],
        1,
    );
    let evs = simulate(
        json!({"decay_fraction": 1.0, "lifetime": 4e-7, "pretrigger_samples": 50, "seed": 8, "noise": 0.0}),
        &raw,
        10,
    );
    let mut pf = pulse_finder("p", json!({"threshold": 0.05}), &raw, &feat);
    let mut out = EventCollector::new(std::slice::from_ref(&feat));
    for e in &evs {
        out.input_meta = e.0;
        pf.process(&as_ref(e, &raw), &mut out).unwrap();
    }
    let recs = &out.events[0];
    assert_eq!(recs.len() as u64, pf.pulses_found());
    // Two channels, one or two pulses each (second pulses beyond the trace are lost).
    assert!(recs.len() >= 20 && recs.len() <= 40, "{}", recs.len());
    let ch = FieldAccess::new(&feat, "channel").unwrap();
    let pulse = FieldAccess::new(&feat, "pulse").unwrap();
    for (m, d) in recs {
        assert!((0..10).contains(&m.counter));
        assert!(ch.get(d, 0).unwrap() <= 1.0);
        assert!(pulse.get(d, 0).unwrap() <= 1.0);
    }
    let first = recs.iter().filter(|(m, _)| m.counter == 0).count();
    assert!(first >= 2);
}

#[test]
fn csv_writes_header_and_integers_as_integers() {
    let dir = temp_dir("csv");
    let feat = shape("feat", &[("channel", "u1"), ("height", "f4")], 1);
    let c = ctx_in(&dir, "csv", json!({"filename": "pulses"}), &[&feat]);
    let mut csv = CsvExport::build(&c).unwrap();
    let ch = FieldAccess::new(&feat, "channel").unwrap();
    let h = FieldAccess::new(&feat, "height").unwrap();
    for i in 0..3 {
        let mut d = vec![0u8; feat.dtype.record_size()];
        ch.set(&mut d, 0, f64::from(i));
        h.set(&mut d, 0, 0.25 * f64::from(i));
        let meta = Metadata {
            counter: 50 + i64::from(i),
            timestamp: 1.5,
            deadtime: 0.0,
        };
        csv.consume(&EventRef {
            data: &d,
            meta,
            dtype: &feat.dtype,
        })
        .unwrap();
    }
    csv.finish().unwrap();
    let text = std::fs::read_to_string(dir.join("pulses.csv")).unwrap();
    assert_eq!(
        text,
        "counter,timestamp,deadtime,channel,height\n50,1.5,0,0,0\n51,1.5,0,1,0.25\n52,1.5,0,2,0.5\n"
    );
    assert_eq!(csv.rows(), 3);
    let dc = ctx_in(&dir, "drain", json!({}), &[&feat]);
    let mut drain = Drain::build(&dc).unwrap();
    let d = vec![0u8; feat.dtype.record_size()];
    for _ in 0..7 {
        drain
            .consume(&EventRef {
                data: &d,
                meta: Metadata::default(),
                dtype: &feat.dtype,
            })
            .unwrap();
    }
    drain.finish().unwrap();
    assert_eq!((drain.events(), drain.bytes()), (7, 35));
    let j: Value =
        serde_json::from_slice(&std::fs::read(dir.join("drain_drain_0.json")).unwrap()).unwrap();
    assert_eq!(j["events"], 7);
    std::fs::remove_dir_all(&dir).ok();
}

/// A CSV exporter started again after a kill that came between the rows of one event (its
/// source has 3 records an event) went on after the last whole line: the torn event's
/// rows stayed in the file (the tester found events of 236, 49 and 488 of 512 rows), while
/// the books counted that event lost. It goes on after the last whole event now.
#[test]
fn a_restarted_csv_exporter_goes_on_after_the_last_whole_event() {
    let dir = temp_dir("csv-torn");
    let feat = shape("feat", &[("x", "u1")], 3);
    let whole = "counter,timestamp,deadtime,x\n0,0,0,1\n0,0,0,2\n0,0,0,3\n";
    std::fs::write(
        dir.join("torn.csv"),
        format!("{whole}1,0,0,4\n1,0,0,5\n1,0,"),
    )
    .unwrap();
    let c = ctx_in(&dir, "csv", json!({"filename": "torn"}), &[&feat]);
    let mut csv = CsvExport::build(&c).unwrap();
    assert_eq!(csv.kept_from_earlier(), Some(1));
    csv.consume(&EventRef {
        data: &[7, 8, 9],
        meta: Metadata {
            counter: 2,
            ..Metadata::default()
        },
        dtype: &feat.dtype,
    })
    .unwrap();
    csv.finish().unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("torn.csv")).unwrap(),
        format!("{whole}2,0,0,7\n2,0,0,8\n2,0,0,9\n")
    );
    assert_eq!(csv.events_kept(), Some(2));
    std::fs::remove_dir_all(&dir).ok();
}

/// A histogram exporter built where its worker's files are (it was started again) goes on
/// from their counts; the events it says it holds are the fewest any file holds, none when
/// one is missing; a file it cannot take is kept beside, not written over.
#[test]
fn a_histogram_exporter_goes_on_from_its_files_and_keeps_what_it_cannot_take() {
    let dir = temp_dir("hist-resume");
    // Only this test's files.
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        std::fs::remove_file(e.path()).unwrap();
    }
    let feat = shape("feat", &[("a", "f4"), ("b", "f4")], 1);
    let build = |bins: Value| {
        let c = ctx_in(&dir, "h", json!({ "bins": bins }), &[&feat]);
        HistogramExport::build(&c).unwrap()
    };
    let bins = json!({"a": [0.0, 1.0, 2], "b": [0.0, 1.0, 2]});
    let mut first = build(bins.clone());
    let mut d = vec![0u8; 8];
    FieldAccess::new(&feat, "a").unwrap().set(&mut d, 0, 0.2);
    FieldAccess::new(&feat, "b").unwrap().set(&mut d, 0, 0.7);
    for _ in 0..3 {
        first
            .consume(&EventRef {
                data: &d,
                meta: Metadata::default(),
                dtype: &feat.dtype,
            })
            .unwrap();
    }
    first.finish().unwrap();
    let counts = |h: &HistogramExport| -> Vec<Vec<u64>> {
        h.histograms().map(|(_, x)| x.counts().to_vec()).collect()
    };
    let again = build(bins.clone());
    assert_eq!(counts(&again), [vec![3, 0], vec![0, 3]]);
    assert_eq!(again.kept_from_earlier(), Some(3));
    // One file gone: its histogram starts empty, and no file is said to hold events.
    std::fs::remove_file(dir.join("histogram_h_b.csv")).unwrap();
    let again = build(bins);
    assert_eq!(counts(&again), [vec![3, 0], vec![0, 0]]);
    assert_eq!(again.kept_from_earlier(), Some(0));
    // Other bins: the file is kept beside.
    let again = build(json!({"a": [0.0, 2.0, 2], "b": [0.0, 1.0, 2]}));
    assert_eq!(counts(&again), [vec![0, 0], vec![0, 0]]);
    assert!(dir.join("histogram_h_a.csv.earlier").exists());
    assert!(!dir.join("histogram_h_a.csv").exists());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn histogram_csv_and_oscilloscope_json_are_written() {
    let dir = temp_dir("hist");
    let feat = shape("feat", &[("height", "f4")], 1);
    let c = ctx_in(
        &dir,
        "h",
        json!({"bins": {"height": [0.0, 1.0, 4]}, "update_interval": 1e-9}),
        &[&feat],
    );
    let mut h = HistogramExport::build(&c).unwrap();
    let acc = FieldAccess::new(&feat, "height").unwrap();
    for x in [0.1, 0.3, 0.3, 0.9, 1.0, -0.5] {
        let mut d = vec![0u8; 4];
        acc.set(&mut d, 0, x);
        h.consume(&EventRef {
            data: &d,
            meta: Metadata::default(),
            dtype: &feat.dtype,
        })
        .unwrap();
    }
    h.flush().unwrap();
    let text = std::fs::read_to_string(dir.join("histogram_h_height.csv")).unwrap();
    assert!(
        text.contains("# entries: 4, underflow: 1, overflow: 1, invalid: 0"),
        "{text}"
    );
    assert!(
        text.ends_with("bin_low,bin_high,count\n0,0.25,1\n0.25,0.5,2\n0.5,0.75,0\n0.75,1,1\n"),
        "{text}"
    );
    let (_, hist) = h.histograms().next().unwrap();
    assert_eq!(hist.edges().len(), 5);

    let raw = shape("raw", &[("ch0", "i2"), ("ch1", "i2")], 4);
    let oc = ctx_in(
        &dir,
        "scope",
        json!({"update_interval": 1000.0, "scale": 0.5, "sample_interval": 2e-9, "channels": ["ch1"]}),
        &[&raw],
    );
    let mut osc = Oscilloscope::build(&oc).unwrap();
    assert!(osc.latest().is_none());
    let mut d = vec![0u8; 16];
    FieldAccess::new(&raw, "ch1")
        .unwrap()
        .store(&mut d, &[2.0, 4.0, -6.0, 8.0]);
    let meta = Metadata {
        counter: 3,
        timestamp: 2.0,
        deadtime: 0.0,
    };
    osc.observe(&EventRef {
        data: &d,
        meta,
        dtype: &raw.dtype,
    })
    .unwrap();
    osc.observe(&EventRef {
        data: &d,
        meta: Metadata { counter: 4, ..meta },
        dtype: &raw.dtype,
    })
    .unwrap();
    assert_eq!(
        osc.kept(),
        1,
        "the second event comes within update_interval"
    );
    let view = osc.latest().unwrap();
    assert_eq!(view.meta.counter, 3);
    assert_eq!(view.channels[0].1, vec![1.0, 2.0, -3.0, 4.0]);
    let j: Value =
        serde_json::from_slice(&std::fs::read(dir.join("oscilloscope_scope.json")).unwrap())
            .unwrap();
    assert_eq!(j["counter"], 3);
    assert_eq!(j["channels"]["ch1"], json!([1.0, 2.0, -3.0, 4.0]));
    let t: Vec<f64> = serde_json::from_value(j["time"].clone()).unwrap();
    assert_eq!(t.len(), 4);
    for (i, x) in t.iter().enumerate() {
        assert!((x - 2e-9 * i as f64).abs() < 1e-20);
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// mimoCoRB2's observers.oscilloscope keys: `t_scaling` and `y_scaling` ([scale, offset,
/// unit]) scale the axes and name their units, `ylim` and `trigger_level` go to the page.
/// Before, all four were accepted and ignored.
#[test]
fn the_oscilloscope_takes_mimocorb2s_scalings() {
    let dir = std::env::temp_dir().join(format!("daq-osc-mimo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let raw = shape("raw", &[("ch0", "i2")], 3);
    let config = json!({"update_interval": 1000.0, "t_scaling": [4.0, -8.0, "ns"],
        "y_scaling": [0.5, 1.0, "mV"], "ylim": [-10, 10], "trigger_level": 2.5});
    let oc = ctx_in(&dir, "scope", config, &[&raw]);
    let mut osc = Oscilloscope::build(&oc).unwrap();
    let mut d = vec![0u8; 6];
    FieldAccess::new(&raw, "ch0")
        .unwrap()
        .store(&mut d, &[2.0, 4.0, -6.0]);
    osc.observe(&EventRef {
        data: &d,
        meta: Metadata::default(),
        dtype: &raw.dtype,
    })
    .unwrap();
    let j: Value =
        serde_json::from_slice(&std::fs::read(dir.join("oscilloscope_scope.json")).unwrap())
            .unwrap();
    assert_eq!(j["time"], json!([-8.0, -4.0, 0.0]));
    assert_eq!(j["channels"]["ch0"], json!([2.0, 3.0, -2.0]));
    assert_eq!(
        (
            &j["time_unit"],
            &j["value_unit"],
            &j["ylim"],
            &j["trigger_level"]
        ),
        (
            &json!("ns"),
            &json!("mV"),
            &json!([-10.0, 10.0]),
            &json!(2.5)
        )
    );
    // The monitor reads them back.
    let bytes = std::fs::read(dir.join("oscilloscope_scope.json")).unwrap();
    let t = daq_engine::monitor::files::parse_trace(&bytes).unwrap();
    assert_eq!(
        (t.time_unit.as_deref(), t.ylim),
        (Some("ns"), Some([-10.0, 10.0]))
    );
    std::fs::remove_dir_all(&dir).ok();

    for (bad, says) in [
        (
            json!({"t_scaling": [1e-9, 0, "s"], "sample_interval": 1e-9}),
            "not both",
        ),
        (json!({"y_scaling": [2, 0], "scale": 2}), "not both"),
        (json!({"t_scaling": [0, 0, "s"]}), "[scale, offset, unit]"),
        (json!({"y_scaling": ["a", 0, "V"]}), "[scale, offset, unit]"),
        (json!({"ylim": [5, 1]}), "min < max"),
    ] {
        let e = Oscilloscope::build(&ctx("scope", bad.clone(), &[&raw], &[]))
            .err()
            .unwrap_or_else(|| panic!("{bad} was accepted"));
        assert!(e.to_string().contains(says), "{bad}: {e}");
    }
}

proptest! {
    /// Any bytes, any float values (NaN, ±inf included): loading fields and finding pulses
    /// never panics, and never reports more pulses than asked for.
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200),
                            values in proptest::collection::vec(any::<f32>(), 0..200),
                            threshold in any::<f32>()) {
        let s = shape("g", &[("a", "i2"), ("b", "f8"), ("c", "u1")], 1);
        let mut out = vec![0f32; 64];
        for f in ["a", "b", "c"] {
            let acc = FieldAccess::new(&s, f).unwrap();
            let n = acc.load(&bytes, &mut out);
            prop_assert!(n <= bytes.len() / 11 + 1);
            let _ = acc.get(&bytes, usize::MAX);
            let mut t = String::new();
            let _ = acc.write_text(&bytes, 3, &mut t);
        }
        let settings = FinderSettings { threshold, release_fraction: 0.5, time_fraction: 0.5 };
        let mut pulses = [Pulse::default(); 4];
        let n = find_pulses(&values, &settings, &mut pulses);
        prop_assert!(n <= 4);
        for p in &pulses[..n] {
            prop_assert!(p.index < values.len());
        }
    }
}

#[test]
fn realtime_waits_for_the_next_arrival_and_returns_idle_when_it_is_far() {
    let raw = shape("raw", &[("ch0", "f4")], 64);
    let mut data = vec![0u8; 64 * 4];
    let mut meta = Metadata::default();
    // At 1 mHz the first arrival is ~1000 s away: the call sleeps at most 100 ms and says Idle.
    let mut slow = simulator(
        "s",
        json!({"realtime": true, "rate": 0.001, "pretrigger_samples": 10, "seed": 1}),
        &raw,
    );
    assert_eq!(
        next_of(&mut slow, &mut data, &mut meta, &raw.dtype),
        Produced::Idle
    );
    // At 1 GHz every arrival is already due: events come without sleeping.
    let mut fast = simulator(
        "s",
        json!({"realtime": true, "rate": 1e9, "pretrigger_samples": 10, "n_events": 5}),
        &raw,
    );
    let mut kinds = vec![];
    for _ in 0..6 {
        kinds.push(next_of(&mut fast, &mut data, &mut meta, &raw.dtype));
    }
    assert_eq!(kinds.iter().filter(|k| **k == Produced::Event).count(), 5);
    assert_eq!(kinds[5], Produced::End);
}

/// issue 12, item 12: time the engine held a realtime source back (its sink was full) is
/// dead time; the arrivals then are not produced afterwards in a burst.
#[test]
fn realtime_source_does_not_catch_up_after_the_engine_held_it() {
    let raw = shape("raw", &[("ch0", "f4")], 64);
    let mut data = vec![0u8; 64 * 4];
    let mut meta = Metadata::default();
    let mut sim = simulator(
        "s",
        json!({"realtime": true, "rate": 2000.0, "pretrigger_samples": 10, "seed": 3}),
        &raw,
    );
    let mut next = |sim: &mut SimulatePulses, held: f64| {
        meta.deadtime = held;
        let p = next_of(sim, &mut data, &mut meta, &raw.dtype);
        (p, meta.timestamp)
    };
    let mut before = 0.0;
    for _ in 0..20 {
        let (p, t) = next(&mut sim, 0.0);
        assert_eq!(p, Produced::Event);
        before = t;
    }
    // The engine waits 0.5 s for room, then hands the source the wait.
    let stall = 0.5;
    std::thread::sleep(std::time::Duration::from_secs_f64(stall));
    let (p, after) = next(&mut sim, stall);
    assert_eq!(p, Produced::Event);
    assert!(
        after - before >= stall,
        "the first event after the stall is stamped {:.4} s after the last before it; the \
         ~1000 arrivals of the stall came as a burst",
        after - before
    );
}

#[test]
fn fast_interleaved_path_writes_the_same_samples_as_the_general_path() {
    // Float32 channels alone take the fused fast path (table noise) or the interleaving path
    // (ziggurat); with an extra field the general per-channel path. Same seed, same draws:
    // the channels must be bit-identical.
    let names = ["a", "b", "c", "d", "e"];
    for nch in [1, 4, 5] {
        for gen in ["table", "ziggurat"] {
            let fields: Vec<(&str, &str)> = names[..nch].iter().map(|n| (*n, "f4")).collect();
            let fast = shape("fast", &fields, 200);
            let mut more = fields.clone();
            more.push(("flag", "u1"));
            let slow = shape("slow", &more, 200);
            let cfg = json!({"seed": 77, "decay_fraction": 0.7, "pretrigger_samples": 20,
                             "channels": names[..nch], "noise_generator": gen});
            let f = simulate(cfg.clone(), &fast, 5);
            let s = simulate(cfg, &slow, 5);
            let mut x = vec![0f32; 200];
            let mut y = vec![0f32; 200];
            for (ef, es) in f.iter().zip(&s) {
                for name in &names[..nch] {
                    assert_eq!(
                        FieldAccess::new(&fast, name).unwrap().load(&ef.1, &mut x),
                        200
                    );
                    assert_eq!(
                        FieldAccess::new(&slow, name).unwrap().load(&es.1, &mut y),
                        200
                    );
                    assert_eq!(x, y, "{nch} channels, {gen}, channel {name}");
                    assert!(x.iter().any(|v| *v > 0.1), "a pulse is there");
                }
            }
        }
    }
}

/// `noise_generator: table` precomputed eight events' worth of normals, however long the
/// events: 4 GB and half a minute of `check` for `data_length: 1e8`. Past 2 Mi samples it
/// draws each sample as `ziggurat` does, so the two give the same samples there.
#[test]
fn table_noise_of_very_long_events_is_drawn_as_ziggurat_draws_it() {
    let n = 4 << 20;
    let raw = shape("raw", &[("ch0", "f4")], n);
    let draw = |gen: &str| {
        let cfg = json!({"seed": 5, "noise_generator": gen, "channels": ["ch0"]});
        simulate(cfg, &raw, 1).pop().unwrap().1
    };
    assert!(draw("table") == draw("ziggurat"));
}
